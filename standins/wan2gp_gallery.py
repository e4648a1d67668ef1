"""The Wan2GP stand-in's gallery (generated and uploaded media) and its one-use HTTP transfer tokens."""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRANSFER_TTL_SECONDS = 600
DEFAULT_MAX_UPLOAD_BYTES = 8 * 1024**3  # the real server's limit
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
AUDIO_EXTENSIONS = {".wav", ".mp3", ".aac", ".m4a", ".flac", ".ogg", ".opus"}
VIDEO_EXTENSIONS = {".mp4", ".mov", ".mkv", ".webm", ".avi"}
MEDIA_TYPES = {"all", "image", "video", "audio"}


def media_type_of(path: Path) -> str | None:
    """image, audio or video by file extension; None for anything else."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in AUDIO_EXTENSIONS:
        return "audio"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return None


@dataclass
class GalleryItem:
    """One file in the gallery."""

    gallery_id: str
    path: Path
    rel_path: str
    media_type: str
    settings: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)

    @property
    def gallery(self) -> str:
        """Wan2GP keeps two galleries: visual (images and videos) and audio."""
        return "audio" if self.media_type == "audio" else "visual"


class Gallery:
    """Generated and uploaded media, oldest first; the newest item of each gallery counts as selected."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._items: dict[str, GalleryItem] = {}
        self._lock = threading.Lock()

    def add(self, path: Path, settings: dict[str, Any] | None = None, stats: dict[str, Any] | None = None) -> dict[str, Any]:
        """Register a file and return its compact record."""
        media_type = media_type_of(path) or "video"
        try:
            rel = path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            rel = str(path)
        item = GalleryItem(f"{'audio' if media_type == 'audio' else 'visual'}:{uuid.uuid4().hex[:12]}", path, rel,
                           media_type, dict(settings or {}), dict(stats or {}))
        with self._lock:
            self._items[item.gallery_id] = item
        return self.compact(item)

    def _live(self) -> list[GalleryItem]:
        """Items whose files still exist (a deleted file leaves the gallery, as in Wan2GP)."""
        with self._lock:
            for gid in [gid for gid, it in self._items.items() if not it.path.is_file()]:
                del self._items[gid]
            return list(self._items.values())

    @staticmethod
    def _selected(items: list[GalleryItem]) -> set[str]:
        """Ids of the newest item of each gallery: what Wan2GP's UI shows as selected after a generation."""
        newest: dict[str, str] = {}
        for it in items:
            newest[it.gallery] = it.gallery_id
        return set(newest.values())

    def compact(self, item: GalleryItem, selected: set[str] | None = None) -> dict[str, Any]:
        """The compact summary the list and job tools return."""
        if selected is None:
            selected = self._selected(self._live())
        prompt = str(item.settings.get("prompt", "") or "").strip()
        return {"gallery_id": item.gallery_id, "gallery": item.gallery, "media_type": item.media_type,
                "filename": item.path.name, "path": item.rel_path, "description": prompt[:200],
                "source": "WanGP", "selected": item.gallery_id in selected, "in_gallery": True,
                "created_at": item.created_at, "size": item.path.stat().st_size if item.path.is_file() else 0,
                **item.stats}

    def list(self, media_type: str = "all", limit: int = 50) -> list[dict[str, Any]]:
        """Compact records, oldest first, the last ``limit`` of them."""
        media_type = str(media_type or "all").strip().lower()
        if media_type not in MEDIA_TYPES:
            raise ValueError("media_type must be all, image, video, or audio")
        limit = max(1, min(int(limit), 500))
        live = self._live()
        selected = self._selected(live)
        items = [it for it in live if media_type == "all" or it.media_type == media_type]
        return [self.compact(it, selected) for it in items[-limit:]]

    def selection(self, media_type: str = "all") -> list[dict[str, Any]]:
        """The currently selected items (the newest of each gallery)."""
        return [rec for rec in self.list(media_type, 500) if rec["selected"]]

    def item(self, gallery_id: str) -> GalleryItem:
        """The item, or KeyError."""
        for it in self._live():
            if it.gallery_id == str(gallery_id or "").strip().lower():
                return it
        raise KeyError(f"Unknown WanGP gallery_id: {gallery_id}")

    def full(self, gallery_id: str) -> dict[str, Any]:
        """Compact record plus the generation settings."""
        item = self.item(gallery_id)
        return {**self.compact(item), "settings": dict(item.settings)}

    def for_paths(self, paths: list[str]) -> list[dict[str, Any]]:
        """Compact records of the given absolute paths, in gallery order."""
        wanted = {str(Path(p).resolve()) for p in paths}
        live = self._live()
        selected = self._selected(live)
        return [self.compact(it, selected) for it in live if str(it.path.resolve()) in wanted]


class Transfers:
    """One-use upload and download tokens for the /wangp_api/gallery routes, valid for 10 minutes."""

    def __init__(self, gallery: Gallery, upload_root: Path, max_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> None:
        self.gallery = gallery
        self.upload_root = upload_root
        self.max_bytes = max_bytes
        self._uploads: dict[str, dict[str, Any]] = {}
        self._downloads: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _cleanup(self) -> None:
        """Forget expired tokens (caller holds the lock)."""
        cutoff = time.time() - TRANSFER_TTL_SECONDS
        for table in (self._uploads, self._downloads):
            for token in [t for t, rec in table.items() if rec["created"] < cutoff]:
                del table[token]

    def create_upload(self, filename: str) -> dict[str, Any]:
        """Reserve an upload URL for one media file."""
        safe_name = Path(str(filename or "").replace("\\", "/")).name.strip()
        if not safe_name or safe_name in (".", ".."):
            raise ValueError("filename is required")
        if media_type_of(Path(safe_name)) is None:
            raise ValueError(f"Unsupported media file extension: {Path(safe_name).suffix or safe_name}")
        token = uuid.uuid4().hex
        with self._lock:
            self._cleanup()
            self._uploads[token] = {"created": time.time(), "filename": safe_name}
        return {"upload_url": f"/wangp_api/gallery/upload/{token}", "method": "PUT", "filename": safe_name,
                "expires_in_seconds": TRANSFER_TTL_SECONDS, "max_bytes": self.max_bytes}

    def consume_upload(self, token: str) -> dict[str, Any] | None:
        """The upload reserved under ``token`` (once), or None."""
        with self._lock:
            self._cleanup()
            return self._uploads.pop(str(token or ""), None)

    def upload_path(self, filename: str) -> Path:
        """A fresh folder for one upload, so equal names never collide."""
        folder = self.upload_root / uuid.uuid4().hex
        folder.mkdir(parents=True, exist_ok=True)
        return folder / Path(filename).name

    def create_download(self, gallery_id: str) -> dict[str, Any]:
        """A one-use download URL for a gallery item."""
        item = self.gallery.item(gallery_id)
        token = uuid.uuid4().hex
        with self._lock:
            self._cleanup()
            self._downloads[token] = {"created": time.time(), "gallery_id": item.gallery_id}
        return {"gallery_id": item.gallery_id, "download_url": f"/wangp_api/gallery/download/{token}",
                "filename": item.path.name, "media_type": item.media_type, "size": item.path.stat().st_size,
                "expires_in_seconds": TRANSFER_TTL_SECONDS}

    def consume_download(self, token: str) -> GalleryItem | None:
        """The item behind ``token`` (once), or None when unknown, used or expired."""
        with self._lock:
            self._cleanup()
            rec = self._downloads.pop(str(token or ""), None)
        if rec is None:
            return None
        try:
            return self.gallery.item(rec["gallery_id"])
        except KeyError:
            return None
