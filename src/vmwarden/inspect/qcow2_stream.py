"""dissect's qcow2 stream with 4 KiB reads (see :mod:`vmwarden.inspect.reads` for why).

A module of its own because it imports dissect, which only the worker needs: the parent
process imports :mod:`vmwarden.inspect.disk` without paying for dissect.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import BinaryIO

from dissect.hypervisor.disk.qcow2 import QCow2, QCow2Stream

from vmwarden.inspect.reads import BLOCK

#: Inflated compressed qcow2 clusters kept per layer (a 64 KiB cluster each by default).
INFLATED_CLUSTERS = 64


class FineQCow2Stream(QCow2Stream):
    """dissect's qcow2 stream, reading 4 KiB at a time instead of a whole cluster."""

    def __init__(self, qcow2: QCow2) -> None:
        super().__init__(qcow2)
        self.align = min(BLOCK, qcow2.cluster_size)
        self._inflated: OrderedDict[int, bytes] = OrderedDict()

    def _read_compressed(self, cluster_descriptor: int, offset: int, length: int) -> bytes:
        cluster = self._inflated.get(cluster_descriptor)
        if cluster is None:
            start = offset - offset % self.qcow2.cluster_size
            cluster = super()._read_compressed(cluster_descriptor, start, self.qcow2.cluster_size)
            self._inflated[cluster_descriptor] = cluster
            if len(self._inflated) > INFLATED_CLUSTERS:
                self._inflated.popitem(last=False)
        else:
            self._inflated.move_to_end(cluster_descriptor)
        into = offset % self.qcow2.cluster_size
        return cluster[into : into + length]


def open_qcow2(fh: BinaryIO, backing: BinaryIO | None) -> FineQCow2Stream:
    """The qcow2 layer in ``fh`` over ``backing``, with the checks ``QCow2.open`` makes."""
    image = QCow2(fh, backing_file=backing)
    image.open()  # raises when a data file or a needed backing file is missing
    return FineQCow2Stream(image)
