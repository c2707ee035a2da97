"""`folder:PATH`: `PATH/<class>/**/<image>`, one subfolder per class.

PATH may be a URI that `tf.io.gfile` reads (`gs://bucket/pets`). A folder whose only subfolder
holds the class folders is entered, so the Kaggle download (`kagglecatsanddogs_5340/PetImages/
{Cat,Dog}`) works from either level. Every file is an item, whatever its extension: a file that
is not an image is quarantined, never silently skipped. Hidden files and folders are skipped and
counted (`Source.skipped`); links are followed (a link back into a folder already listed is
counted, not followed again); a named pipe, device or broken link is an item that is quarantined
with its reason. A class folder with no file is an error naming the class. File names that are
not valid UTF-8 are read as they are; their keys show the odd bytes escaped (`caf\\xe9.jpg`).
The listing is listing.py's `list_folder`, shared with the data preflight and the snapshot.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from typing import Any

from components.common.files import mounted_uri
from components.ingest.sources.base import Item, PathKind, SnapshotContext, Source
from components.ingest.sources.hashing import SnapshotError, hash_remote_tree, line, size_and_time
from components.ingest.sources.listing import (
    Listings,
    display_name,
    is_uri,
    list_folder,
    read_local,
    read_uri,
)
from components.spec import DataConfig


class FolderKind(PathKind):
    scheme = "folder"
    example = "folder:/data/pets"

    def visible(self, rest: str, not_here: tuple[str, ...]) -> str | None:
        """A folder under `/gcs/BUCKET/` is listed as `gs://BUCKET/`."""
        uri = mounted_uri(rest)
        if uri is not None and rest.startswith(not_here):
            return uri
        return super().visible(rest, not_here)

    def open(self, rest: str, config: Any) -> Source:
        listing = list_folder(rest, config)
        read = read_uri if is_uri(listing.root) else read_local
        max_bytes = getattr(config, "max_file_bytes", None)

        def items() -> Iterator[Item]:
            for name, relatives in listing.classes.items():
                label = display_name(name)
                for relative in relatives:
                    path = listing.path(name, relative)
                    yield Item(
                        key=display_name(f"{name}/{relative}"),
                        label=label,
                        read=partial(read, path, max_bytes),
                        origin=display_name(path),
                    )

        total = sum(len(relatives) for relatives in listing.classes.values())
        return Source(items(), total, listing.skipped)

    def listed_classes(
        self, rest: str, data: DataConfig, not_here: tuple[str, ...], listings: Listings
    ) -> set[str] | None:
        if self.elsewhere(rest, not_here):
            return None
        return {display_name(name) for name in listings.folder(rest, data).classes}

    def snapshot(self, rest: str, context: SnapshotContext) -> int | None:
        """The relative path, size and modification time of every file ingest will read, from
        the listing ingest reads; a `gs://` folder: object names, sizes, generations."""
        if rest.startswith("gs://"):
            return hash_remote_tree(rest.rstrip("/") + "/", context.digest, context.lister)
        if not os.path.isdir(rest):
            raise SnapshotError(
                f"data.source folder:{rest} is not a directory; expected {rest}/<class>/<image files>"
            )
        listing = context.listings.folder(rest, context.data)
        context.digest.update(line("root", listing.root))
        count = 0
        for name, relatives in listing.classes.items():
            folder = os.path.join(listing.root, name)
            for relative in relatives:  # posix-relative: a local path on the systems we run on
                size, mtime = size_and_time(os.path.join(folder, relative))
                context.digest.update(line(f"{name}/{relative}", size, mtime))
                count += 1
        return count
