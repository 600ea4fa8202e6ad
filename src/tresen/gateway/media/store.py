"""The media tables: one row per media id, one per relay blob made from a media."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import RowMapping

from tresen.core.db import Database
from tresen.gateway.schema import media, media_blobs

__all__ = ["MediaRecord", "MediaStore"]


@dataclass(frozen=True, slots=True)
class MediaRecord:
    id: str
    origin: str
    """``upload`` (through the API) or ``inbound`` (from a customer)."""
    mime_type: str
    sha256: str
    """Hex SHA-256 of the file."""
    file_size: int
    filename: str | None
    created_ms: int
    expires_ms: int


def _record(row: RowMapping) -> MediaRecord:
    return MediaRecord(
        id=row["id"],
        origin=row["origin"],
        mime_type=row["mime_type"],
        sha256=row["sha256"],
        file_size=int(row["file_size"]),
        filename=row["filename"],
        created_ms=int(row["created_ms"]),
        expires_ms=int(row["expires_ms"]),
    )


class MediaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, record: MediaRecord) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                insert(media).values(
                    id=record.id,
                    origin=record.origin,
                    mime_type=record.mime_type,
                    sha256=record.sha256,
                    file_size=record.file_size,
                    filename=record.filename,
                    created_ms=record.created_ms,
                    expires_ms=record.expires_ms,
                )
            )

    async def get(self, media_id: str) -> MediaRecord | None:
        async with self.db.read() as conn:
            row = (
                (await conn.execute(select(media).where(media.c.id == media_id))).mappings().first()
            )
        return None if row is None else _record(row)

    async def remove(self, media_id: str) -> list[str]:
        """Delete the media's row; the relay blobs made from it (their rows go too)."""
        async with self.db.write() as conn:
            blobs = (
                await conn.execute(
                    select(media_blobs.c.blob_id).where(media_blobs.c.media_id == media_id)
                )
            ).scalars()
            blob_ids = [str(b) for b in blobs]
            await conn.execute(delete(media_blobs).where(media_blobs.c.media_id == media_id))
            await conn.execute(delete(media).where(media.c.id == media_id))
        return blob_ids

    async def expired(self, now_ms: int, limit: int = 500) -> list[str]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                select(media.c.id).where(media.c.expires_ms <= now_ms).limit(limit)
            )
            return [str(r) for r in rows.scalars()]

    async def add_blob(self, media_id: str, blob_id: str, now_ms: int) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                insert(media_blobs).values(blob_id=blob_id, media_id=media_id, created_ms=now_ms)
            )

    async def exists(self, media_id: str) -> bool:
        return await self.get(media_id) is not None
