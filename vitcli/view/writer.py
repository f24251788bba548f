"""Write the `vitcli view` page: the template with the data inlined as JSON, typed arrays in base64.

Binary values (`bytes`: typed arrays and PNG images) become base64 strings; the JSON goes into a
`<script type="application/json">` block, so the page needs no network and opens from file://.
"""

import base64
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any


def _jsonable(value: Any) -> Any:
    """The page data with every `bytes` value as a base64 string."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _asset(name: str) -> str:
    return resources.files("vitcli.view").joinpath(name).read_text(encoding="utf-8")


# Characters a script block's text must not hold as themselves: `<` (`</script>`, `<!--` and `<script>`
# change how the HTML parser ends the block), `>` and `&` (for good measure), U+2028/9 (line ends in old JS).
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                                 "\u2029": "\\u2029"})


def script_json(value: Any) -> str:
    """`value` as JSON safe inside an HTML <script> block: every string from an untrusted name stays a string."""
    return json.dumps(_jsonable(value), separators=(",", ":"), allow_nan=False).translate(_SCRIPT_ESCAPES)


def render_page(data: Mapping[str, object]) -> bytes:
    """The whole HTML document: template, CSS, JavaScript and data in one file."""
    text = script_json(data)
    page = _asset("page.html")
    for key, part in (("/*STYLE*/", _asset("page.css")), ("/*SCRIPT*/", _asset("page.js")), ("/*DATA*/", text)):
        page = page.replace(key, part, 1)
    return page.encode("utf-8")


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
