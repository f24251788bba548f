"""Write the `vitcli view` page: the template with the data inlined as JSON, typed arrays in base64.

Binary values (`bytes`: typed arrays and PNG images) become base64 strings; the JSON goes into a
`<script type="application/json">` block, so the page needs no network and opens from file://.
"""

import base64
import json
import secrets
from collections.abc import Mapping
from importlib import resources
from typing import Any


def _jsonable(value: Any, blobs: list[bytes], mark: str) -> Any:
    """The page data with every `bytes` value replaced by `mark` and appended to `blobs`, in the order
    `json.dumps` writes them (dicts in insertion order)."""
    if isinstance(value, bytes):
        blobs.append(value)
        return mark
    if isinstance(value, dict):
        return {k: _jsonable(v, blobs, mark) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, blobs, mark) for v in value]
    return value


def _asset(name: str) -> str:
    return resources.files("vitcli.view").joinpath(name).read_text(encoding="utf-8")


# Characters a script block's text must not hold as themselves: `<` (`</script>`, `<!--` and `<script>`
# change how the HTML parser ends the block), `>` and `&` (for good measure), U+2028/9 (line ends in old JS).
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                                 "\u2029": "\\u2029"})


def script_json(value: Any) -> bytes:
    """`value` as JSON (ASCII) safe inside an HTML <script> block, every `bytes` value as a base64 string:
    every string from an untrusted name stays a string. The base64 text (the bulk of a page) is spliced in
    after `json.dumps`, which need not scan it: it holds no character JSON or the block would escape."""
    blobs: list[bytes] = []
    mark = secrets.token_hex(16)  # no name can hold it but by chance (2^-128)
    text = json.dumps(_jsonable(value, blobs, mark), separators=(",", ":"), allow_nan=False)
    parts = text.translate(_SCRIPT_ESCAPES).encode("ascii").split(f'"{mark}"'.encode("ascii"))
    if len(parts) != len(blobs) + 1:
        raise ValueError("the page data holds its own base64 mark")
    out = [parts[0]]
    for blob, part in zip(blobs, parts[1:], strict=True):
        out += [b'"', base64.b64encode(blob), b'"', part]
    return b"".join(out)


def render_page(data: Mapping[str, object]) -> bytes:
    """The whole HTML document: template, CSS, JavaScript and data in one file."""
    page = _asset("page.html")
    for key, part in (("/*STYLE*/", _asset("page.css")), ("/*SCRIPT*/", _asset("page.js"))):
        page = page.replace(key, part, 1)
    head, tail = page.split("/*DATA*/", 1)
    return b"".join([head.encode("utf-8"), script_json(data), tail.encode("utf-8")])


def encoded_size(data: Mapping[str, object]) -> int:
    """Bytes of the data alone once base64-encoded (the page adds ~40 kB of template)."""
    def walk(v: Any) -> int:
        if isinstance(v, bytes):
            return 4 * ((len(v) + 2) // 3)
        if isinstance(v, dict):
            return sum(walk(x) for x in v.values())
        if isinstance(v, (list, tuple)):
            return sum(walk(x) for x in v)
        return 0

    return walk(data)


def write_page(path: str, data: Mapping[str, object]) -> int:
    """Write the page atomically (nothing half-written on error); its size in bytes."""
    from vitcli.io.arrays import write_bytes

    body = render_page(data)
    write_bytes(path, lambda f: f.write(body))
    return len(body)
