#!/usr/bin/env python3
"""What the browser bundle's code is made of, by the app module or crate it was compiled for.

Reads the function sizes of a WASM module with a name section: the cargo output before
wasm-bindgen and wasm-opt, which keep none. Built with v0 symbol mangling, a generic function's
name carries its type arguments, so `serde_json`'s deserialiser of `app::api::keys::KeyView`
counts for the keys page's data rather than for serde_json:

    CARGO_TARGET_DIR=/tmp/wasm-names LEPTOS_OUTPUT_NAME=cryptopulse \\
      RUSTFLAGS="--cfg erase_components -C symbol-mangling-version=v0" \\
      cargo build -p cryptopulse-frontend --lib --no-default-features \\
        --target wasm32-unknown-unknown --profile wasm-release
    python3 scripts/wasm-breakdown.py \\
      /tmp/wasm-names/wasm32-unknown-unknown/wasm-release/cryptopulse_frontend.wasm

A function is counted once, for the first app module (`app::ui::*`, else `app::*`) its name
mentions, else for the crate of its outermost path. Sizes are bytes of code before wasm-opt,
so read them as shares. `--grep WORD...` also prints how much code mentions each word (an
identifier as mangled, e.g. `serde_json` or `hydrate_async`).
"""

import collections
import re
import sys


def leb128(data, at):
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def sections(data):
    if data[:4] != b"\0asm":
        sys.exit("not a WASM module")
    at = 8
    while at < len(data):
        kind = data[at]
        size, at = leb128(data, at + 1)
        yield kind, at, size
        at += size


def imported_functions(data, at):
    count, at = leb128(data, at)
    functions = 0
    for _ in range(count):
        for _ in range(2):  # module and field names
            length, at = leb128(data, at)
            at += length
        kind = data[at]
        at += 1
        if kind == 0:  # function: type index
            functions += 1
            _, at = leb128(data, at)
        elif kind == 1:  # table: element type, limits
            at += 1
            flags, at = leb128(data, at)
            _, at = leb128(data, at)
            if flags & 1:
                _, at = leb128(data, at)
        elif kind == 2:  # memory: limits
            flags, at = leb128(data, at)
            _, at = leb128(data, at)
            if flags & 1:
                _, at = leb128(data, at)
        elif kind == 3:  # global: type, mutability
            at += 2
    return functions


def function_names(data, at, end):
    length, at = leb128(data, at)
    if data[at : at + length] != b"name":
        return {}
    at += length
    names = {}
    while at < end:
        kind = data[at]
        size, at = leb128(data, at + 1)
        if kind == 1:
            count, cursor = leb128(data, at)
            for _ in range(count):
                index, cursor = leb128(data, cursor)
                length, cursor = leb128(data, cursor)
                names[index] = data[cursor : cursor + length].decode("utf-8", "replace")
                cursor += length
        at += size
    return names


def functions(data):
    imports, code, names = 0, None, {}
    for kind, at, size in sections(data):
        if kind == 2:
            imports = imported_functions(data, at)
        elif kind == 10:
            code = (at, size)
        elif kind == 0:
            names.update(function_names(data, at, at + size))
    if code is None:
        sys.exit("no code section")
    if not names:
        sys.exit("no name section: use the cargo output, before wasm-bindgen and wasm-opt")
    at, _ = code
    count, at = leb128(data, at)
    for index in range(count):
        size, body = leb128(data, at)
        yield names.get(imports + index, f"function {imports + index}"), body - at + size
        at = body + size


def identifier_after(name, at):
    digits = re.match(r"\d+", name[at:])
    if not digits:
        return "?"
    start = at + len(digits.group())
    return name[start : start + int(digits.group())]


def owner(name):
    """The app module a function was compiled for, else its crate (v0 mangling)."""
    ui = name.find("3app2ui")
    if ui >= 0:
        module = identifier_after(name, ui + len("3app2ui"))
        if module == "trading":
            module += "::" + identifier_after(name, ui + len("3app2ui7trading"))
        return "app::ui::" + module
    app = re.search(r"3app(?=\d)", name)
    if app:
        module = identifier_after(name, app.end())
        if module == "api":  # the page data: which area's
            module += "::" + identifier_after(name, app.end() + len("3api"))
        return "app::" + module
    crate = re.search(r"Cs[0-9A-Za-z]+_(?=\d)", name)
    if crate:
        return identifier_after(name, crate.end())
    return name.split("::")[0][:40]


def main():
    args = sys.argv[1:]
    words = []
    if "--grep" in args:
        words = args[args.index("--grep") + 1 :]
        args = args[: args.index("--grep")]
    if len(args) != 1:
        sys.exit(__doc__)
    listed = list(functions(open(args[0], "rb").read()))
    total = sum(size for _, size in listed)
    print(f"{len(listed)} functions, {total} bytes of code")
    by_owner = collections.Counter()
    for name, size in listed:
        by_owner[owner(name)] += size
    for name, size in by_owner.most_common(40):
        print(f"{size:>9} {100 * size / total:5.1f} %  {name}")
    for word in words:
        mangled = f"{len(word)}{word}"
        size = sum(s for name, s in listed if mangled in name or word in name)
        print(f"mentions {word}: {size} bytes, {100 * size / total:.1f} %")


if __name__ == "__main__":
    main()
