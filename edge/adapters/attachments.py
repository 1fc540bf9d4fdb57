"""The photos of the service point's requests: files DATA_DIR/attachments/<sha256>
(directory 0700, files 0600), written atomically and made durable before the record
that names them is signed, so a signed request never names a photo the device lost.
A file's name is its content's SHA-256: the same photo twice is one file."""

import hashlib
import os
import tempfile
from pathlib import Path

from edge.domain.service_point import is_sha256_hex

DIRECTORY = "attachments"
PART_PREFIX = ".part-"  # a photo being written


class AttachmentError(Exception):
    """A photo the device cannot keep or read back; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AttachmentFiles:
    def __init__(self, data_dir: Path) -> None:
        self.directory = Path(data_dir) / DIRECTORY

    def path(self, sha256: str) -> Path:
        if not is_sha256_hex(sha256):
            raise AttachmentError("BAD_ATTACHMENT", f"{sha256!r} is not a SHA-256 in hex")
        return self.directory / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def store(self, data: bytes) -> tuple[str, bool]:
        """Keep `data`; answers its SHA-256 and whether this call wrote the file (False:
        it was there already, and is left as it was)."""
        digest = sha256_hex(data)
        target = self.path(digest)
        if target.is_file() and self._matches(target, digest):
            return digest, False
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        fd, temporary = tempfile.mkstemp(prefix=PART_PREFIX, dir=self.directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a power cut
        finally:
            os.close(directory)
        return digest, True

    def stored_names(self) -> list[str]:
        """The names in the folder: photos (their SHA-256) and unfinished `.part-` files."""
        try:
            return sorted(entry.name for entry in os.scandir(self.directory) if entry.is_file())
        except FileNotFoundError:
            return []

    def remove_name(self, name: str) -> None:
        """Remove a photo or an unfinished file by its name in the folder (nothing else)."""
        if not (is_sha256_hex(name) or name.startswith(PART_PREFIX)) or "/" in name:
            raise AttachmentError("BAD_ATTACHMENT", f"{name!r} is not a photo file's name")
        (self.directory / name).unlink(missing_ok=True)

    def read(self, sha256: str) -> bytes:
        """The photo's bytes, checked against its name (a damaged file is refused)."""
        try:
            data = self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise AttachmentError(
                "ATTACHMENT_MISSING", f"no photo {sha256} on this device"
            ) from None
        if sha256_hex(data) != sha256:
            raise AttachmentError("ATTACHMENT_DAMAGED", f"photo {sha256} does not match its hash")
        return data

    @staticmethod
    def _matches(path: Path, digest: str) -> bool:
        try:
            return sha256_hex(path.read_bytes()) == digest
        except OSError:
            return False
