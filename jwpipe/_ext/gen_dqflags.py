"""Write ``dqflags.h`` from ``jwpipe/dq.py`` (run by meson at build time)."""

import ast
import sys


def main(source: str, target: str) -> None:
    # Parse the FLAGS literal rather than importing jwpipe: the package is not built yet.
    tree = ast.parse(open(source, encoding="utf-8").read())
    flags = None
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "FLAGS":
            flags = ast.literal_eval(node.value)
    if flags is None:
        raise SystemExit(f"{source}: no FLAGS table found")
    lines = [
        "/* Generated from jwpipe/dq.py by gen_dqflags.py; do not edit. */",
        "#ifndef JWPIPE_DQFLAGS_H",
        "#define JWPIPE_DQFLAGS_H",
        "",
    ]
    for bit, name, meaning in flags:
        lines.append(f"#define DQ_{name} (1u << {bit})  /* {meaning} */")
    lines += ["", "#endif", ""]
    with open(target, "w", encoding="utf-8") as out:
        out.write("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
