"""OSV vulnerability records (the osv.dev schema) and their matching against guest packages.

``VulnDB.load(path)`` reads a directory of OSV ``.json`` files or a zip as osv.dev ships them;
``db.match(facts)`` lists the advisories affecting a guest's installed packages, compared with
univers' dpkg, rpm and apk version rules.
"""

from vmwarden.vulns.db import VulnDB, VulnMatch
from vmwarden.vulns.ecosystems import MANAGER_VERSIONS, parse_version
from vmwarden.vulns.feed import VulnFeedError
from vmwarden.vulns.severity import RANK, RATINGS, cvss3_base_score, rating

__all__ = [
    "MANAGER_VERSIONS",
    "RANK",
    "RATINGS",
    "VulnDB",
    "VulnFeedError",
    "VulnMatch",
    "cvss3_base_score",
    "parse_version",
    "rating",
]
