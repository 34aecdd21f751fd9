"""Read a libvirt domain XML into a ``VM`` record, and write the vmwarden metadata element.

Pure functions: no libvirt call happens here, so every rule is tested against the real
corpus of libvirt's own test XMLs. Only *direct* children are followed (``devices/disk``,
``devices/interface``, ``disk/source``, ``disk/backingStore``), never ``.//``: the corpus
has ``<interface>`` elements inside ``<hostdev><source>`` that are not NICs, ``<source>``
elements nested in ``<reservations>``, and ``<mirror>`` elements with their own source
that are a block-copy destination, not part of the backing chain.
"""

from __future__ import annotations

import math
import threading

from lxml import etree

from vmwarden.connectors.libvirt.agentxml import agent_channel
from vmwarden.errors import ConnectorError
from vmwarden.model.vm import VM, VM_XMLNS, Disk, Layer, Nic, State, VmMeta

META_KEY = "vmwarden"  # the namespace prefix libvirt stores the metadata element under

# libvirt scaled-integer units (docs: formatdomain "Memory Allocation"), as bytes.
_UNIT_BYTES: dict[str, int] = {
    "b": 1,
    "bytes": 1,
    "kb": 1000,
    "k": 1024,
    "kib": 1024,
    "mb": 1000**2,
    "m": 1024**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "g": 1024**3,
    "gib": 1024**3,
    "tb": 1000**4,
    "t": 1024**4,
    "tib": 1024**4,
    "pb": 1000**5,
    "p": 1024**5,
    "pib": 1024**5,
    "eb": 1000**6,
    "e": 1024**6,
    "eib": 1024**6,
}

_LOCAL = threading.local()  # lxml parsers must not be shared between threads


def _parser() -> etree.XMLParser:
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False, no_network=True, huge_tree=True, remove_comments=True
        )
        _LOCAL.parser = parser
    return parser


def parse_xml(xml: str | bytes, what: str = "XML") -> etree._Element:
    """Parse untrusted XML text (no entities, no network) or raise ``ConnectorError``."""
    data = xml.encode() if isinstance(xml, str) else xml
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise ConnectorError(
            f"malformed {what}: {exc}",
            hint="the hypervisor returned XML vmwarden cannot read; check it with virsh dumpxml",
        ) from None
    if root is None:
        raise ConnectorError(f"malformed {what}: empty document")
    return root


def scaled_to_bytes(value: str | None, unit: str | None, default_unit: str = "b") -> int | None:
    """A libvirt scaled integer (``<memory unit='MiB'>512</memory>``) in bytes, or None."""
    if value is None or not value.strip():
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    factor = _UNIT_BYTES.get((unit or default_unit).strip().lower())
    if factor is None:
        return None
    return number * factor


def parse_domain(xml: str | bytes, *, host: str, uri: str, state: State, persistent: bool) -> VM:
    """One ``<domain>`` → ``VM``. ``state``/``persistent`` come from the API, not the XML.

    Each element's children are walked once (``_first``) rather than looked up by path:
    lxml's ``find("a/b")`` runs its path engine in Python, and a sweep of 50,000 domains
    spent more time in those look-ups than in parsing the XML itself.
    """
    root = parse_xml(xml, "domain XML")
    if etree.QName(root).localname != "domain":
        raise ConnectorError(f"malformed domain XML: root element is <{root.tag}>, not <domain>")
    top = _first(root, _DOMAIN_TAGS)
    name = (_text_of(top.get("name")) or "").strip()
    uuid = (_text_of(top.get("uuid")) or "").strip().lower()
    if not name and not uuid:
        raise ConnectorError("malformed domain XML: neither <name> nor <uuid>")
    os_type_el = _grandchild(root, "os", "type")
    devices = top.get("devices")
    disks: list[Disk] = []
    nics: list[Nic] = []
    if devices is not None:
        for el in devices:
            tag = el.tag
            if tag == "disk":
                disks.append(_disk(el))
            elif tag == "interface":
                nics.append(_nic(el))
    meta_el = _grandchild(root, "metadata", _META_TAG)
    vcpu = top.get("vcpu")
    return VM(
        id=uuid or name,
        name=name or uuid,
        host=host,
        uri=uri,
        state=state,
        persistent=persistent,
        vcpus=_int(vcpu.text) if vcpu is not None else None,
        memory_kib=_memory_kib(top.get("memory")),
        os_type=_text(os_type_el),
        arch=os_type_el.get("arch") if os_type_el is not None else None,
        disks=disks,
        nics=nics,
        meta=meta_from_element(meta_el) if meta_el is not None else VmMeta(),
        agent_channel=agent_channel(devices),
    )


_META_TAG = f"{{{VM_XMLNS}}}vm"
_DOMAIN_TAGS = frozenset({"name", "uuid", "devices", "vcpu", "memory"})
_DISK_TAGS = frozenset({"target", "source", "driver", "encryption", "readonly", "backingStore"})
_STORE_TAGS = frozenset({"source", "format", "backingStore"})
_NIC_TAGS = frozenset({"mac", "source", "model", "link", "target"})


def _first(el: etree._Element, wanted: frozenset[str]) -> dict[str, etree._Element]:
    """The first direct child of each wanted tag, in one walk (what ``el.find(tag)`` gives)."""
    found: dict[str, etree._Element] = {}
    for child in el:
        tag = child.tag
        if tag in wanted and tag not in found:
            found[tag] = child
    return found


def _grandchild(el: etree._Element, child: str, tag: str) -> etree._Element | None:
    """``el.find("child/tag")``: the first ``tag`` under any ``child``, in document order."""
    for parent in el.iterchildren(child):
        for found in parent.iterchildren(tag):
            return found
    return None


def _text_of(el: etree._Element | None) -> str | None:
    """``findtext``: the element's text, "" for an empty element, None when it is absent."""
    if el is None:
        return None
    return el.text or ""


def _text(el: etree._Element | None) -> str | None:
    if el is None or el.text is None:
        return None
    return el.text.strip() or None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def _memory_kib(el: etree._Element | None) -> int | None:
    """``<memory>`` in KiB; libvirt's default unit for it is KiB, byte units round up."""
    if el is None:
        return None
    size = scaled_to_bytes(el.text, el.get("unit"), default_unit="KiB")
    return None if size is None else math.ceil(size / 1024)


# --- disks ------------------------------------------------------------------------------


def _disk(el: etree._Element) -> Disk:
    dtype = el.get("type") or "file"
    parts = _first(el, _DISK_TAGS)
    target = parts.get("target")
    source = parts.get("source")
    chain: list[Layer] = []
    path = _source_path(dtype, source)
    driver = parts.get("driver")
    if path is not None:
        chain.append(
            Layer(path=path, format=driver.get("type") if driver is not None else None, type=dtype)
        )
        chain.extend(_backing_chain(parts.get("backingStore")))
    encrypted = "encryption" in parts or (source is not None and _has_child(source, "encryption"))
    return Disk(
        target=(target.get("dev") if target is not None else None) or "",
        device=el.get("device") or "disk",
        type=dtype,
        bus=target.get("bus") if target is not None else None,
        readonly="readonly" in parts,
        encrypted=encrypted,
        chain=chain,
    )


def _has_child(el: etree._Element, tag: str) -> bool:
    return any(True for _ in el.iterchildren(tag))


def _backing_chain(store: etree._Element | None) -> list[Layer]:
    """Nested ``<backingStore>`` levels; an empty ``<backingStore/>`` ends the chain."""
    layers: list[Layer] = []
    while store is not None:
        stype = store.get("type")
        parts = _first(store, _STORE_TAGS)
        source = parts.get("source")
        if stype is None and source is None:
            break  # <backingStore/>: explicitly no backing image
        stype = stype or "file"
        fmt = parts.get("format")
        layers.append(
            Layer(
                path=_source_path(stype, source),
                format=fmt.get("type") if fmt is not None else None,
                type=stype,
            )
        )
        store = parts.get("backingStore")
    return layers


def _source_path(dtype: str, source: etree._Element | None) -> str | None:
    """The operator-facing location of a disk or backing layer, by storage type."""
    if source is None:
        return None
    if dtype == "file":
        return source.get("file") or None
    if dtype == "block":
        return source.get("dev") or None
    if dtype == "dir":
        return source.get("dir") or None
    if dtype == "network":
        return _network_path(source)
    if dtype == "volume":
        pool, volume = source.get("pool"), source.get("volume")
        return f"{pool}/{volume}" if pool and volume else None
    if dtype == "nvme":
        addr = source.find("address")
        if addr is None:
            return None
        pci = "{}:{}:{}.{}".format(
            *(
                (addr.get(k) or "0").removeprefix("0x")
                for k in ("domain", "bus", "slot", "function")
            )
        )
        return f"nvme://{pci}/{source.get('namespace') or '1'}"
    # vhostuser (socket path), vhostvdpa (dev) and anything newer.
    return source.get("path") or source.get("dev") or source.get("file") or None


def _network_path(source: etree._Element) -> str | None:
    """``protocol://host[:port]/name`` (first host); unix sockets as ``proto+unix:///name?socket=``."""
    protocol = source.get("protocol")
    if not protocol:
        return None
    name = source.get("name") or ""
    if name and not name.startswith("/"):
        name = "/" + name
    query = source.get("query")
    suffix = f"?{query}" if query else ""
    host = source.find("host")
    if host is not None and host.get("transport") == "unix":
        sock = host.get("socket") or ""
        sep = "&" if suffix else "?"
        return f"{protocol}+unix://{name}{suffix}{sep}socket={sock}"
    authority = ""
    if host is not None:
        hname = host.get("name") or ""
        if ":" in hname:  # IPv6 literal
            hname = f"[{hname}]"
        port = host.get("port")
        authority = f"{hname}:{port}" if port else hname
    return f"{protocol}://{authority}{name}{suffix}"


# --- NICs -------------------------------------------------------------------------------


def parse_interface(xml: str) -> Nic:
    """One ``<interface>`` element's text as a ``Nic`` (e.g. one a journal recorded)."""
    root = parse_xml(xml, "interface XML")
    if root.tag != "interface":
        raise ConnectorError(f"expected an <interface> element, got <{root.tag}>")
    return _nic(root)


def _nic(el: etree._Element) -> Nic:
    ntype = el.get("type") or "unknown"
    parts: dict[str, etree._Element] = {}
    vlan: list[int] = []
    for child in el:
        tag = child.tag
        if tag == "vlan":
            vlan += [
                t for t in (_int(x.get("id")) for x in child.iterchildren("tag")) if t is not None
            ]
        elif tag in _NIC_TAGS and tag not in parts:
            parts[tag] = child
    mac, source, model, link, target = (
        parts.get(t) for t in ("mac", "source", "model", "link", "target")
    )
    src = source.attrib if source is not None else {}
    address = mac.get("address") if mac is not None else None
    return Nic(
        mac=address.lower() if address else None,
        type=ntype,
        network=src.get("network") if ntype == "network" else None,
        bridge=src.get("bridge"),
        source_dev=src.get("dev"),
        portgroup=src.get("portgroup"),
        vlan=vlan,
        model=model.get("type") if model is not None else None,
        link=(link.get("state") or "up") if link is not None else "up",
        target_dev=target.get("dev") if target is not None else None,
    )


# --- metadata ---------------------------------------------------------------------------

_META_FIELDS = ("owner", "classification", "template", "registered")


def meta_from_element(el: etree._Element) -> VmMeta:
    """Read ``<vmwarden:vm>``. Children are matched by local name: libvirt's metadata API
    returns the element *without* its namespace, the domain XML returns it with."""
    meta = VmMeta()
    for child in el:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        local = tag.rpartition("}")[2]  # QName(child).localname, without building a QName
        value = (child.text or "").strip()
        if local == "tag":
            key = child.get("name")
            if key:
                meta.tags[key] = value
        elif local == "registered":
            meta.registered = {"yes": True, "no": False, "true": True, "false": False}.get(
                value.lower()
            )
        elif local in _META_FIELDS:
            setattr(meta, local, value or None)
    return meta


def meta_from_xml(xml: str | bytes) -> VmMeta:
    """Parse the element text returned by ``virDomainGetMetadata``."""
    return meta_from_element(parse_xml(xml, "vmwarden metadata"))


def meta_to_xml(meta: VmMeta) -> str:
    """The ``<vm>`` element for ``virDomainSetMetadata`` (absent fields omitted).

    It is written without a namespace on purpose: libvirt puts the element and its children
    into ``VM_XMLNS`` under the key (prefix) ``vmwarden`` itself, and refuses an element
    that already declares that prefix ("failed to create a new XML namespace").
    """
    root = etree.Element("vm")
    for field in ("owner", "classification", "template"):
        value = getattr(meta, field)
        if value is not None:
            etree.SubElement(root, field).text = value
    if meta.registered is not None:
        etree.SubElement(root, "registered").text = "yes" if meta.registered else "no"
    for key, value in sorted(meta.tags.items()):
        etree.SubElement(root, "tag", name=key).text = value
    return etree.tostring(root, encoding="unicode")
