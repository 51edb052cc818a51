"""Executes one parameterized notebook for nbforge, cell by cell, with nbclient.

Usage: python runner.py INPUT.ipynb FOLDER TIMEOUT_SECONDS

Runs in the worksheet's environment image with the Jupyter tools' Python; the kernel is
the notebook's own kernel when the image has it, else, for a Python notebook (or one that
names no kernel), the image's `python3`. A notebook in another language whose kernel the
image lacks fails at once, saying so. The working
directory is FOLDER, where the executed notebook is written as output.ipynb (through a
temporary name, so a half-written file never has the final name), with the notebook's
other files. Progress goes to standard output, one JSON object per line:
  {"event": "start", "total": N}
  {"event": "cell", "n": K, "total": N, "heading": "..."}
  {"event": "done", "ok": true|false, "error": "...", "packages": [...]}
The process ends itself after TIMEOUT_SECONDS.
"""

import json
import os
import subprocess
import sys
import threading


def emit(event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def packages():
    """The kernel environment's packages, as `pip list --format=json` gives them."""
    for cmd in (
        ["python3", "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        [
            "python3",
            "-c",
            "import importlib.metadata as m, json; print(json.dumps(sorted("
            "({'name': d.metadata['Name'], 'version': d.version} for d in m.distributions()"
            " if d.metadata['Name']), key=lambda p: p['name'].lower())))",
        ],
    ):
        try:
            out = subprocess.run(cmd, capture_output=True, timeout=60, check=True)
            return json.loads(out.stdout)
        except Exception:
            continue
    return []


def headings(cells):
    """For each cell, the last Markdown heading before it (or in it)."""
    current, out = None, []
    for cell in cells:
        if cell.get("cell_type") == "markdown":
            for line in "".join(cell.get("source", "")).splitlines():
                if line.startswith("#"):
                    current = line.lstrip("#").strip()[:200] or current
        out.append(current)
    return out


def write_atomically(nb, path):
    import nbformat

    tmp = path + ".partial"
    with open(tmp, "w", encoding="utf-8") as f:
        nbformat.write(nb, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    source, folder, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])

    def expire():
        emit({"event": "done", "ok": False, "timeout": True,
              "error": "the run took longer than its time limit"})
        os._exit(124)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()

    os.makedirs(folder, exist_ok=True)
    os.chdir(folder)
    with open(os.path.join(os.path.dirname(source), "parameters.json"), "rb") as f:
        params = f.read()
    with open("parameters.json", "wb") as f:
        f.write(params)
    with open(source, encoding="utf-8") as f:
        metadata = json.load(f).get("metadata") or {}
    import asyncio

    ok, error = asyncio.run(execute(source, folder, metadata))
    timer.cancel()
    emit({"event": "done", "ok": ok, "error": error, "packages": packages()})


async def execute(source, folder, metadata):
    """Executes the notebook; whether it went through, and the error if not.

    The kernel is started first, with jupyter_client alone (a fifth of a second to
    import): it boots in its own process while nbformat and nbclient load, which takes
    about as long, and nbclient then drives the running kernel.
    """
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    kernelspec = metadata.get("kernelspec") or {}
    wanted = kernelspec.get("name")
    language = str(
        kernelspec.get("language") or (metadata.get("language_info") or {}).get("name") or "python"
    ).lower()
    specs = KernelSpecManager().find_kernel_specs()
    if wanted in specs:
        kernel = wanted
    elif language == "python" and "python3" in specs:
        kernel = "python3"
    elif not wanted and specs:
        kernel = sorted(specs)[0]
    else:
        return False, (
            f"the notebook's kernel {wanted or language!r} ({language}) is not in this "
            f"environment image, which has: {', '.join(sorted(specs)) or 'no kernel'}"
        )
    km = AsyncKernelManager(kernel_name=kernel)
    start_error = None
    try:
        # nbclient's own default: the IPython history is kept in memory, not in the home.
        await km.start_kernel(cwd=folder, extra_arguments=["--HistoryManager.hist_file=:memory:"])
    except Exception as e:  # no such kernel, its program is missing, ...
        start_error = f"the kernel {kernel!r} did not start: {type(e).__name__}: {e}"

    # jsonschema, which nbformat loads, imports the optional rfc3987_syntax when it is
    # installed (Jupyter's server pulls it in), and that builds a parser for most of a
    # second; IRI formats are never checked here, so it is kept out.
    sys.modules.setdefault("rfc3987_syntax", None)
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(source, as_version=4)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    total = len(code)
    heading_of = headings(nb.cells)
    position = {cell_index: n for n, cell_index in enumerate(code, start=1)}
    emit({"event": "start", "total": total})
    if start_error is not None:
        write_atomically(nb, os.path.join(folder, "output.ipynb"))
        return False, start_error

    def on_cell_start(cell, cell_index):
        n = position.get(cell_index)
        if n is not None:
            emit({"event": "cell", "n": n, "total": total, "heading": heading_of[cell_index]})

    client = NotebookClient(
        nb,
        km=km,
        kernel_name=kernel,
        timeout=None,
        resources={"metadata": {"path": folder}},
        on_cell_start=on_cell_start,
    )
    ok, error = True, None
    try:
        await client.async_execute()
    except CellExecutionError as e:
        ok = False
        ename = getattr(e, "ename", "") or "Error"
        evalue = getattr(e, "evalue", "") or ""
        error = f"{ename}: {evalue}".strip().rstrip(":")
    except Exception as e:  # the kernel died, ...
        ok = False
        error = f"{type(e).__name__}: {e}"
    finally:
        try:
            await km.shutdown_kernel(now=True)
        except Exception:
            pass
    write_atomically(nb, os.path.join(folder, "output.ipynb"))
    return ok, error


if __name__ == "__main__":
    main()
