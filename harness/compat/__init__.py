"""Seams: every place the harness patches a library or reads its private parts, one module per library.

A patch of another project's internals is correct only for the versions it was
written against. Each module here names that version (``WRITTEN_AGAINST``) and
the range it is known to hold for (``SUPPORTED``), and calls :func:`require`
before it touches anything, so an upgrade that moves the internals fails with
one line naming the library, its version and the range, instead of a wrong
result or a traceback three calls later. Nothing outside this package reaches
into a library's private state.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

from harness.base.errors import UserError


@dataclass(frozen=True)
class Seam:
    """One library the harness patches or reads privately: which versions the patch is known to hold for."""

    library: str  #: distribution name, as pip knows it
    written_against: str  #: the version the seam was written and tested against
    supported: str  #: PEP 440 specifier of versions the seam is known to be right for
    what: str  #: what the seam touches, for the error message

    def installed(self) -> str | None:
        try:
            return version(self.library)
        except PackageNotFoundError:
            return None

    def require(self) -> str:
        """The installed version; UserError when it is missing or outside :attr:`supported`."""
        found = self.installed()
        if found is None:
            raise UserError(f"{self.library} is not installed (needed for {self.what})")
        return self.check(found)

    def check(self, found: str) -> str:
        """``found`` (a version installed elsewhere: another environment's); UserError when outside
        :attr:`supported`."""
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version

        if not SpecifierSet(self.supported).contains(Version(found), prereleases=True):
            raise UserError(
                f"{self.library} {found} is not a version the harness knows: {self.what} was written against "
                f"{self.written_against} and holds for {self.library}{self.supported}; install a version in that "
                f"range (or update harness/compat/{self.library.replace('-', '_')}.py and its test)"
            )
        return found


def seams() -> list[Seam]:
    """Every seam, for ``harness plugins``-style reports and the tests."""
    from harness.compat import compressed_tensors, llamacpp, llmcompressor, ray, tqdm, trl

    return [llmcompressor.SEAM, compressed_tensors.SEAM, ray.SEAM, trl.SEAM, tqdm.SEAM, llamacpp.SEAM]
