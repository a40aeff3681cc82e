"""Resumable, verified HTTP downloads and safe zip extraction (stdlib only).

``fetch`` never leaves a half-written destination: bytes go to ``<dest>.part``, which a later call
resumes with an HTTP ``Range`` request, and only a size- and checksum-verified file is renamed into place.
``safe_extract`` refuses archive members that could write outside the target folder.
"""
from __future__ import annotations

import glob
import hashlib
import http.client
import os
import re
import stat
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from diffseg.errors import UserError

_CHUNK = 1 << 16
_BACKOFF_S = 0.5  # first pause between attempts, doubled each time: transient faults clear fast or not at all
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}  # server-side hiccups worth another try


class DownloadError(UserError, RuntimeError):
    """A download failed for good; the message names the URL and the cause."""


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the target folder or is not a regular file."""


class _Retry(Exception):
    """A transient failure: the next attempt resumes from the ``.part`` file."""


def md5sum(path: Path) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def is_complete(path: Path, size: int | None = None, md5: str | None = None) -> bool:
    """Whether ``path`` exists and matches the expected size and MD5 (each checked only when given)."""
    path = Path(path)
    if not path.is_file():
        return False
    if size is not None and path.stat().st_size != size:
        return False
    return md5 is None or md5sum(path) == md5.lower()


def fetch(url: str, dest: Path, *, size: int | None = None, md5: str | None = None, timeout: float = 30,
          retries: int = 3, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` unless a verified copy is already there; return ``dest``.

    Args:
        url: the file's URL.
        dest: final path; the download runs in ``<dest>.part`` and is renamed only once verified.
        size: expected size in bytes; otherwise the size the server reports is checked.
        md5: expected hex MD5; a mismatch deletes the ``.part`` (bad data must not be resumed).
        timeout: socket timeout in seconds, per connection attempt and per read.
        retries: attempts in all; each attempt after the first resumes where the last one stopped.
        progress: show a tqdm byte bar.

    Raises:
        DownloadError: unreachable host, HTTP error status, size or checksum mismatch.
    """
    dest = Path(dest)
    if is_complete(dest, size, md5):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    cause = "no attempt made"
    for attempt in range(max(retries, 1)):
        if attempt:
            time.sleep(_BACKOFF_S * 2 ** (attempt - 1))
        try:
            _attempt(url, part, size, timeout, progress, dest.name)
            break
        except _Retry as exc:
            cause = str(exc)
    else:
        raise DownloadError(f"download of {url} failed after {max(retries, 1)} attempt(s): {cause}")
    if md5 is not None and (actual := md5sum(part)) != md5.lower():
        part.unlink()
        raise DownloadError(f"download of {url} failed: checksum mismatch (md5 {actual}, expected {md5.lower()})")
    os.replace(part, dest)
    return dest


def _attempt(url: str, part: Path, size: int | None, timeout: float, progress: bool, label: str) -> None:
    """One connection: resume or restart ``part`` and stream into it; raise ``_Retry`` on transient faults."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
            if resp.status == 206:
                start, total = _content_range(resp.headers.get("Content-Range", ""))
                if start != offset:
                    part.unlink()
                    raise _Retry(f"server resumed at byte {start}, not {offset}")
                mode = "ab"
            else:  # a plain 200 ignores the Range header: the body is the whole file
                offset, mode = 0, "wb"
                length = resp.headers.get("Content-Length")
                total = int(length) if length is not None else None
            if size is not None and total is not None and total != size:
                part.unlink(missing_ok=True)
                raise DownloadError(f"download of {url} failed: size mismatch (server reports {total} bytes, "
                                    f"expected {size})")
            expected = size if size is not None else total
            with open(part, mode) as f, tqdm(total=expected, initial=offset, unit="B", unit_scale=True,
                                             unit_divisor=1024, desc=label, disable=not progress) as bar:
                while chunk := resp.read(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            _, total = _content_range(exc.headers.get("Content-Range", ""))
            if total == offset and size is None:  # the .part already holds the whole file
                return
            part.unlink()
            raise _Retry(f"HTTP 416 for a resume at byte {offset}, restarting") from exc
        if exc.code in _RETRY_STATUS:
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise _Retry(f"unreachable host ({_reason(exc.reason)})") from exc
    except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        raise _Retry(f"connection lost ({_reason(exc)})") from exc
    # http.client ends a short body without an error, so truncation is found by counting.
    got = part.stat().st_size
    if expected is not None and got < expected:
        raise _Retry(f"truncated at {got} of {expected} bytes")
    if expected is not None and got > expected:
        part.unlink()
        raise DownloadError(f"download of {url} failed: size mismatch (received {got} bytes, expected {expected})")


def _content_range(header: str) -> tuple[int | None, int | None]:
    """(first byte, total size) from ``bytes 100-199/200`` or ``bytes */200``; None where absent."""
    match = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", header)
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total != "*" else None)


def _reason(reason: object) -> str:
    return getattr(reason, "strerror", None) or str(reason) or type(reason).__name__


def safe_extract(zip_path: Path, dest_dir: Path, members: list[str] | None = None) -> list[Path]:
    """Extract regular files of ``zip_path`` into ``dest_dir``; return their paths.

    Every chosen member is checked before anything is written, and each file is written to a temporary
    name and renamed, so a refused archive writes nothing and an interrupted one leaves no partial file.

    Args:
        zip_path: the archive.
        dest_dir: target folder; members keep their inner paths below it.
        members: inner paths to extract; None extracts every file (directory entries are implied).

    Raises:
        UnsafeArchiveError: an absolute path, a drive letter, a ``..`` component, a symlink or another
            non-regular entry.
        ValueError: a requested member is not in the archive.
    """
    dest_dir = Path(dest_dir)
    root = dest_dir.resolve()
    written = []
    with zipfile.ZipFile(zip_path) as zf:
        if members is None:
            chosen = [info for info in zf.infolist() if not info.is_dir()]
        else:
            by_name = {info.filename: info for info in zf.infolist()}
            missing = [name for name in members if name not in by_name]
            if missing:
                raise ValueError(f"{zip_path} has no member(s) {', '.join(missing)}")
            chosen = [by_name[name] for name in members]
        targets = [(info, _target(root, info)) for info in chosen]
        for info, target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            # A temporary file of an extraction killed before its rename would otherwise stay for good.
            for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
                stale.unlink()
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
            try:
                with zf.open(info) as src, os.fdopen(fd, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            written.append(target)
    return written


def _target(root: Path, info: zipfile.ZipInfo) -> Path:
    """The path ``info`` extracts to below ``root``, or ``UnsafeArchiveError``."""
    name = info.filename
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise UnsafeArchiveError(f"archive member {name!r} is a symlink")
    if info.is_dir() or (stat.S_IFMT(mode) and not stat.S_ISREG(mode)):  # mode 0: made on DOS, a plain file
        raise UnsafeArchiveError(f"archive member {name!r} is not a regular file")
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise UnsafeArchiveError(f"archive member {name!r} has an absolute path")
    parts = [p for p in re.split(r"[/\\]", name) if p not in ("", ".")]
    if ".." in parts or not parts:
        raise UnsafeArchiveError(f"archive member {name!r} escapes the target folder")
    target = root.joinpath(*parts)
    # Existing symlinked folders under root could still redirect the write.
    if not target.resolve().is_relative_to(root):
        raise UnsafeArchiveError(f"archive member {name!r} resolves outside {root}")
    return target
