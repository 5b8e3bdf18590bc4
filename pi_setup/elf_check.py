"""What the ELF files inside a wheel demand of the machine that loads them (pyelftools).

A wheel tagged `linux_armv7l` can still hold an x86 object, a soft-float object, or code linked
against a newer glibc than the Pi has: pip installs it, and the import fails on the Pi. These
checks read every ELF member of the wheel and name the first thing the target cannot give.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile
from elftools.elf.gnuversions import GNUVerNeedSection

from pi_setup.errors import WheelError

EF_ARM_EABIMASK = 0xFF000000
EF_ARM_EABI_VER5 = 0x05000000
EF_ARM_ABI_FLOAT_HARD = 0x00000400
MAX_MEMBER_BYTES = 512 * 1024**2  # a wheel member larger than this is not read into memory

# Symbol version names whose number is compared against the target's ceiling.
_VERSIONED = re.compile(r"^(GLIBC|GLIBCXX|CXXABI)_(\d+(?:\.\d+)*)$")


@dataclass(frozen=True)
class ElfInfo:
    """One ELF member of a wheel: its architecture and what it needs at load time."""

    member: str  # path inside the wheel
    machine: str  # e.g. EM_ARM, EM_X86_64
    elfclass: int  # 32 or 64
    little_endian: bool
    flags: int  # e_flags
    needed: Tuple[str, ...]  # DT_NEEDED
    versions: Tuple[Tuple[str, str], ...]  # (library, version name) from .gnu.version_r

    @property
    def arm_eabi5_hard_float(self) -> bool:
        """32-bit little-endian ARM, EABI version 5, hard-float calling convention (armhf)."""
        return (
            self.machine == "EM_ARM"
            and self.elfclass == 32
            and self.little_endian
            and self.flags & EF_ARM_EABIMASK == EF_ARM_EABI_VER5
            and bool(self.flags & EF_ARM_ABI_FLOAT_HARD)
        )

    def describe_arch(self) -> str:
        if self.machine != "EM_ARM":
            return f"{self.machine} {self.elfclass}-bit"
        eabi = (self.flags & EF_ARM_EABIMASK) >> 24
        floats = "hard-float" if self.flags & EF_ARM_ABI_FLOAT_HARD else "soft-float"
        return f"ARM {self.elfclass}-bit EABI{eabi} {floats}"


@dataclass(frozen=True)
class TargetAbi:
    """The newest symbol versions a target's libc and libstdc++ provide."""

    name: str
    ceilings: Tuple[Tuple[str, Tuple[int, ...]], ...]  # ("GLIBC", (2, 31)), …

    def ceiling(self, family: str) -> Optional[Tuple[int, ...]]:
        return dict(self.ceilings).get(family)


# Debian bullseye: glibc 2.31, gcc 10's libstdc++ (GLIBCXX_3.4.28, CXXABI_1.3.12).
BULLSEYE_ABI = TargetAbi(
    "bullseye", (("GLIBC", (2, 31)), ("GLIBCXX", (3, 4, 28)), ("CXXABI", (1, 3, 12)))
)


def _version_tuple(text: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def read_elf(member: str, data: bytes) -> Optional[ElfInfo]:
    """The ElfInfo of DATA, or None when it is not an ELF file."""
    if data[:4] != b"\x7fELF":
        return None
    try:
        elf = ELFFile(io.BytesIO(data))
        needed: List[str] = []
        versions: List[Tuple[str, str]] = []
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                needed.extend(tag.needed for tag in section.iter_tags("DT_NEEDED"))
            elif isinstance(section, GNUVerNeedSection):
                for verneed, auxiliaries in section.iter_versions():
                    versions.extend((verneed.name, aux.name) for aux in auxiliaries)
        return ElfInfo(
            member=member,
            machine=str(elf.header.e_machine),
            elfclass=elf.elfclass,
            little_endian=elf.little_endian,
            flags=int(elf.header.e_flags),
            needed=tuple(needed),
            versions=tuple(versions),
        )
    except (ELFError, ValueError, KeyError) as error:
        raise WheelError(f"{member}: unreadable ELF file ({error})") from None


def wheel_elves(wheel: Path) -> List[ElfInfo]:
    """Every ELF member of WHEEL (shared objects, executables), in archive order."""
    found = []
    try:
        with zipfile.ZipFile(wheel) as archive:
            for entry in archive.infolist():
                if entry.is_dir() or entry.file_size < 52:  # smaller than an ELF header
                    continue
                with archive.open(entry) as handle:
                    if handle.read(4) != b"\x7fELF":
                        continue
                if entry.file_size > MAX_MEMBER_BYTES:
                    raise WheelError(f"{wheel.name}: {entry.filename} is larger than 512 MB")
                info = read_elf(entry.filename, archive.read(entry))
                if info is not None:
                    found.append(info)
    except (zipfile.BadZipFile, OSError) as error:
        raise WheelError(f"{wheel}: not a readable wheel ({error})") from None
    return found


def check_arch(elves: Iterable[ElfInfo]) -> List[str]:
    """One problem per ELF that is not ARM EABI5 hard-float."""
    return [
        f"{elf.member}: {elf.describe_arch()}, expected ARM 32-bit EABI5 hard-float (armhf)"
        for elf in elves
        if not elf.arm_eabi5_hard_float
    ]


def check_symbol_versions(elves: Iterable[ElfInfo], abi: TargetAbi) -> List[str]:
    """One problem per ELF that needs a GLIBC/GLIBCXX/CXXABI version newer than ABI has."""
    problems = []
    for elf in elves:
        too_new: Dict[str, Tuple[int, ...]] = {}
        for _library, name in elf.versions:
            match = _VERSIONED.match(name)
            if not match:
                continue
            family, number = match.group(1), _version_tuple(match.group(2))
            ceiling = abi.ceiling(family)
            if ceiling is not None and number > ceiling and number > too_new.get(family, ()):
                too_new[family] = number
        for family, number in sorted(too_new.items()):
            have = ".".join(map(str, abi.ceiling(family) or ()))
            problems.append(
                f"{elf.member}: needs {family}_{'.'.join(map(str, number))}, "
                f"{abi.name} has {family}_{have}"
            )
    return problems


def check_needed(elves: Iterable[ElfInfo], available: FrozenSet[str], where: str) -> List[str]:
    """One problem per NEEDED library found neither in AVAILABLE (the target's library file
    names) nor in the wheel itself (bundled libraries, e.g. `numpy.libs/`)."""
    elves = list(elves)
    bundled = {Path(elf.member).name for elf in elves}
    problems = []
    for elf in elves:
        missing = [n for n in elf.needed if n not in available and n not in bundled]
        if missing:
            problems.append(f"{elf.member}: needs {', '.join(missing)}, not found in {where}")
    return problems


LIBRARY_DIRS = (
    "lib/arm-linux-gnueabihf",
    "usr/lib/arm-linux-gnueabihf",
    "lib",
    "usr/lib",
    "usr/local/lib",
)


def target_libraries(rootfs: Path) -> FrozenSet[str]:
    """File names of the shared libraries in the target root filesystem's library folders."""
    names = set()
    for folder in LIBRARY_DIRS:
        path = rootfs / folder
        if path.is_dir():
            names.update(entry.name for entry in path.iterdir() if ".so" in entry.name)
    if not names:
        raise WheelError(f"{rootfs}: no shared libraries found (not a root filesystem?)")
    return frozenset(names)
