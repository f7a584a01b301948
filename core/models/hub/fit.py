"""The fit of each quant of a repository before anything is downloaded, by the one verdict (core.models.fit).

The verdict needs the model's shape (layers, heads, context), which only the GGUF header holds. The header of the
smallest quant is fetched with a Range request into a sparse file as long as the remote one (so the reader's
"tensor runs past the end" check holds while no tensor byte is fetched), then every quant is judged as that
shape with its own size: the quants of one repository differ in bytes, not in shape.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tuillm.core.errors import ModelFileError, first_line
from tuillm.core.models.fit import Fit, load_fit
from tuillm.core.models.hub import client
from tuillm.core.models.hub.files import Quant, RemoteFile, RepoListing
from tuillm.core.models.metadata import ModelInfo, read_info
from tuillm.core.settings import Config

HEADER_PREFIXES = (2 << 20, 16 << 20, 64 << 20)  # tokenizer arrays make some headers several MB long


@dataclass(frozen=True)
class QuantFit:
    quant: Quant
    fit: Fit


def _fetch_prefix(repo: str, commit: str, f: RemoteFile, n: int) -> bytes:
    """The first ``n`` bytes of ``f`` (fewer when it is shorter), read as they stream: a server that ignores the
    Range and sends the whole file, or an endless one, is not read past them."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    url = hf_hub_url(repo, f.name, revision=commit, endpoint=client.endpoint())
    headers = build_hf_headers(token=client.token())
    headers["Range"] = f"bytes=0-{max(min(n, f.size), 1) - 1}"
    headers["Accept-Encoding"] = "identity"
    what = f"the request for the header of {f.name}"
    return client.call(repo, lambda: client.get_bounded(url, what=what, limit=n, cut=True, headers=headers))


def _judge(listing: RepoListing, first: RemoteFile, path: Path) -> ModelInfo:
    """The header of ``first``, read at ``path`` from ever longer prefixes until it is whole."""
    for n in HEADER_PREFIXES:
        data = _fetch_prefix(listing.repo, listing.commit, first, n)
        with path.open("wb") as out:
            out.write(data)
            out.truncate(first.size)  # sparse: the tensor data is never fetched nor written
        try:
            return read_info(path)
        except ModelFileError as exc:
            if "truncated" not in exc.problem or len(data) >= first.size:
                raise client.HubError(f"{listing.repo}/{first.name}: {exc.problem}") from None
    raise client.HubError(f"{listing.repo}/{first.name}: the GGUF header is larger than "
                          f"{HEADER_PREFIXES[-1] >> 20} MB")


def remote_shape(listing: RepoListing, quant: Quant) -> ModelInfo:
    """The header of ``quant``'s first file, read from its first bytes."""
    first = quant.files[0]
    try:
        with tempfile.TemporaryDirectory(prefix="tuillm-header-") as tmp:
            return _judge(listing, first, Path(tmp) / "header.gguf")
    except OSError as exc:  # a size past what the file system takes (EFBIG), no usable temporary folder
        raise client.HubError(f"{listing.repo}/{first.name}: cannot judge its header here "
                              f"({exc.strerror or first_line(exc)})") from None


def as_quant(shape: ModelInfo, quant: Quant, local_path: Path) -> ModelInfo:
    """``shape`` with ``quant``'s bytes, at the path the file will have (its settings apply to the load)."""
    ratio = quant.size / max(shape.size_bytes, 1)
    return dataclasses.replace(
        shape, path=local_path, size_bytes=quant.size, file_type=quant.quant,
        layer_bytes=tuple(int(b * ratio) for b in shape.layer_bytes), other_bytes=int(shape.other_bytes * ratio))


def quant_fits(listing: RepoListing, config: Config, snapshot: Path, *, available: int | None = None,
               offload: bool | None = None) -> list[QuantFit]:
    """Each quant of ``listing`` with the fit its load would have, smallest first."""
    if not listing.quants:
        return []
    shape = remote_shape(listing, listing.quants[0])
    return [QuantFit(q, load_fit(as_quant(shape, q, snapshot / q.name), config, available=available,
                                 offload=offload)) for q in listing.quants]
