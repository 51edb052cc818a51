"""Build the worksheet test corpus: small notebooks executed for real with nbclient.

Run with Debian's python3 (python3-nbclient, python3-ipykernel, python3-matplotlib,
python3-pandas, python3-ipywidgets):

    /usr/bin/python3 tests/data/notebooks/make_corpus.py

Every notebook is written next to this script with real outputs.
"""

import base64
import pathlib

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_raw_cell

HERE = pathlib.Path(__file__).resolve().parent

# A 4x4 red PNG used as a markdown cell attachment.
TINY_PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAFElEQVR4nGP8z4AATEhsPBwMDAwAOTABCEwA8fkAAAAASUVORK5CYII="
)

SETUP = "import matplotlib\nmatplotlib.use('module://matplotlib_inline.backend_inline')\nimport matplotlib.pyplot as plt\nplt.rcParams['figure.figsize'] = (5, 3)\nplt.rcParams['figure.dpi'] = 72"


def tagged(cell, *tags):
    cell.metadata["tags"] = list(tags)
    return cell


def params(src):
    return tagged(new_code_cell(src), "parameters")


def notebooks():
    yield "growth_curve", [
        new_markdown_cell("# Bacterial growth curve\n\nFits a logistic model $N(t) = \\frac{K}{1 + e^{-r(t - t_0)}}$ to optical density readings.\n\n$$\\frac{dN}{dt} = rN\\left(1 - \\frac{N}{K}\\right)$$"),
        params("# Parameters of the model\nrate = 0.8  # growth rate r per hour\ncapacity: float = 1.6  # carrying capacity K (OD600)\nhours = 24  # length of the experiment\nstrain = 'E. coli K-12'  # strain shown in the title\nlog_scale = False  # plot the y axis on a log scale\nreplicates = [1, 2, 3]  # replicate ids to simulate"),
        new_code_cell(SETUP),
        new_code_cell("import numpy as np\nrng = np.random.default_rng(1)\nt = np.linspace(0, hours, 49)\nfig, ax = plt.subplots()\nfor rep in replicates:\n    n = capacity / (1 + np.exp(-rate * (t - hours / 3))) + rng.normal(0, 0.03, t.size)\n    ax.plot(t, n, 'o-', ms=2, label=f'replicate {rep}')\nax.set_xlabel('time (h)'); ax.set_ylabel('OD600'); ax.set_title(strain)\nif log_scale: ax.set_yscale('log')\nax.legend(); plt.show()"),
        new_markdown_cell("The curve saturates at the carrying capacity."),
        new_code_cell("print(f'final OD600 ~ {capacity:.2f} after {hours} h')"),
    ]
    yield "svg_plot", [
        new_markdown_cell("# Dose response (SVG figure)\n\nThe figure below is vector graphics."),
        params("doses = [0.1, 1.0, 10.0, 100.0]\nec50 = 3.5  # half maximal effective concentration (uM)\nhill = 1.2"),
        new_code_cell(SETUP + "\n%config InlineBackend.figure_formats = ['svg']"),
        new_code_cell("import numpy as np\nx = np.logspace(-2, 3, 60)\ny = 1 / (1 + (ec50 / x) ** hill)\nfig, ax = plt.subplots()\nax.semilogx(x, y)\nax.scatter(doses, [1 / (1 + (ec50 / d) ** hill) for d in doses], color='k')\nax.set_xlabel('dose (uM)'); ax.set_ylabel('response')\nplt.show()"),
    ]
    yield "pandas_tables", [
        new_markdown_cell("# Sample sheet\n\n| column | meaning |\n|---|---|\n| `sample` | sample id |\n| `tpm` | transcripts per million |\n\n~~Old normalisation~~ replaced by TPM."),
        params("n_genes = 12  # number of genes to show\nseed = 7"),
        new_code_cell("import numpy as np, pandas as pd\nrng = np.random.default_rng(seed)\ndf = pd.DataFrame({'gene': [f'GENE{i}' for i in range(n_genes)], 'tpm': rng.gamma(2, 50, n_genes).round(2), 'chrom': rng.choice(['chr1', 'chr2', 'chrX'], n_genes)})\ndf"),
        new_code_cell("df.describe()"),
        new_code_cell("df.groupby('chrom').tpm.agg(['mean', 'count'])"),
        new_code_cell("df.style.highlight_max(subset=['tpm'])"),
    ]
    yield "errors", [
        new_markdown_cell("# A notebook that fails\n\nThe cell below raises an error; the worksheet shows a short message."),
        new_code_cell("import sys, warnings\nprint('starting analysis')\nprint('low coverage on chr2', file=sys.stderr)\nwarnings.warn('deprecated normalisation')"),
        new_code_cell("counts = {'chr1': 10}\ncounts['chrM']"),
        new_code_cell("1 / 0"),
        new_code_cell("print('\\x1b[31mred\\x1b[0m and \\x1b[1;32mbold green\\x1b[0m')"),
    ]
    yield "widgets", [
        new_markdown_cell("# Interactive threshold\n\nWidgets cannot run in a static worksheet."),
        new_code_cell("import ipywidgets as w\nslider = w.IntSlider(value=5, min=0, max=10, description='threshold')\nslider"),
        new_code_cell("w.VBox([w.Text(value='BRCA1', description='gene'), w.Checkbox(value=True, description='normalise')])"),
        new_code_cell("print('threshold is', slider.value)"),
    ]
    att = new_markdown_cell("## Microscopy legend\n\n![red square](attachment:square.png)\n\nSee <b>bold HTML</b> and a [link](https://example.org).\n\n- [x] stained\n- [ ] imaged")
    att["attachments"] = {"square.png": {"image/png": TINY_PNG}}
    yield "markdown_math", [
        new_markdown_cell("# Population genetics notes\n\nHardy-Weinberg: $p^2 + 2pq + q^2 = 1$ with $p_1 * q_2$ kept literal.\n\n$$\\chi^2 = \\sum_i \\frac{(O_i - E_i)^2}{E_i}$$\n\n| genotype | observed | expected |\n|:--|--:|--:|\n| AA | 298 | 294.3 |\n| Aa | 489 | 496.4 |\n| aa | 213 | 209.3 |"),
        att,
        new_raw_cell("raw cell text"),
        new_code_cell("from IPython.display import Markdown, Latex\nMarkdown('**computed** result: $\\\\hat{p} = 0.54$')"),
        new_code_cell("Latex(r'$$F_{ST} = \\frac{H_T - H_S}{H_T}$$')"),
    ]
    yield "display_mix", [
        new_markdown_cell("# Rich display outputs"),
        new_code_cell("from IPython.display import HTML, JSON, SVG, Image, display\nimport base64\ndisplay(HTML('<table><tr><th>well</th><th>OD</th></tr><tr><td>A1</td><td>0.31</td></tr></table>'))\ndisplay(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"40\" height=\"40\"><circle cx=\"20\" cy=\"20\" r=\"15\" fill=\"teal\"/></svg>'))\ndisplay(JSON({'run': 3, 'ok': True, 'wells': ['A1', 'B2']}))\ndisplay(Image(data=base64.b64decode('" + TINY_PNG + "'), format='png', width=64))"),
        new_code_cell(SETUP + "\nimport io\nfig, ax = plt.subplots(figsize=(2, 2)); ax.bar(['a', 'b'], [3, 5])\nbuf = io.BytesIO(); fig.savefig(buf, format='jpg'); plt.close(fig)\ndisplay(Image(data=buf.getvalue(), format='jpeg'))"),
        new_code_cell("42"),
        new_code_cell("{'samples': 96, 'plates': 1}"),
    ]
    yield "hidden_cells", [
        new_markdown_cell("# Report with hidden parts"),
        tagged(new_code_cell("print('removed entirely')"), "remove-cell"),
        tagged(new_code_cell("print('output removed')"), "remove-output"),
        tagged(new_code_cell("print('input removed, output kept')"), "remove-input"),
        tagged(new_code_cell("print('input hidden, output kept')"), "hide-input"),
        nbformat.from_dict({"cell_type": "code", "metadata": {"jupyter": {"outputs_hidden": True}}, "source": "print('outputs_hidden')", "outputs": [], "execution_count": None, "id": "hidden-out"}),
        nbformat.from_dict({"cell_type": "markdown", "metadata": {"jupyter": {"source_hidden": True}}, "source": "collapsed markdown", "id": "hidden-md"}),
        new_markdown_cell("Visible closing remark."),
    ]
    yield "streams", [
        new_markdown_cell("# Alignment log"),
        new_code_cell("for i in range(40):\n    print(f'read batch {i:02d}: {1000 + i * 37} reads aligned')"),
        new_code_cell("import sys\nfor i in range(5):\n    print(f'warning: mismatch in read {i}', file=sys.stderr)"),
        new_code_cell("print('<b>not html</b> & kept as text')"),
    ]
    yield "expression_report", [
        new_markdown_cell("# Differential expression report\n\nVolcano plot of a simulated experiment."),
        params("fold_change: float = 2.0  # minimum absolute fold change\np_value: float = 0.05  # significance threshold\nlabel = \"treated vs control\"  # comparison label\nshow_table = True\ngenes: list[str] = ['TP53', 'MYC']  # genes to highlight\nmax_points = 2_000"),
        new_code_cell(SETUP),
        new_code_cell("import numpy as np, pandas as pd\nrng = np.random.default_rng(3)\nlfc = rng.normal(0, 1.5, max_points); p = rng.uniform(0, 1, max_points) ** 3\nsig = (abs(lfc) >= np.log2(fold_change)) & (p <= p_value)\nfig, ax = plt.subplots()\nax.scatter(lfc, -np.log10(p), s=3, c=np.where(sig, 'crimson', 'grey'))\nax.set_title(label); ax.set_xlabel('log2 fold change'); ax.set_ylabel('-log10 p')\nplt.show()"),
        new_code_cell("if show_table:\n    display(pd.DataFrame({'gene': genes, 'lfc': [2.1, -1.7], 'p': [0.001, 0.02]}))"),
    ]


def dashboard():
    cells = [
        new_markdown_cell("# Plate reader dashboard"),
        new_code_cell(SETUP),
        new_code_cell("fig, ax = plt.subplots(); ax.plot([0, 1, 2, 3], [0.1, 0.4, 0.9, 1.2]); plt.show()"),
        new_code_cell("print('plate 7, 96 wells, 3 empty')"),
        new_markdown_cell("Notes for the operator (hidden in the dashboard)."),
    ]
    layout = [
        {"hidden": False, "col": 0, "row": 0, "width": 12, "height": 2},
        {"hidden": True},
        {"hidden": False, "col": 0, "row": 2, "width": 8, "height": 10},
        {"hidden": False, "col": 8, "row": 2, "width": 4, "height": 4},
        {"hidden": True},
    ]
    for cell, view in zip(cells, layout):
        cell.metadata["extensions"] = {"jupyter_dashboards": {"version": 1, "views": {"grid_default": view}}}
    meta = {"extensions": {"jupyter_dashboards": {"version": 1, "activeView": "grid_default", "views": {"grid_default": {"name": "grid", "type": "grid", "cellMargin": 10, "defaultCellHeight": 20, "maxColumns": 12}}}}, "voila": {"template": "gridstack"}}
    return cells, meta


def execute(name, cells, meta=None):
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    if meta:
        nb.metadata.update(meta)
    client = NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=True, store_widget_state=False, resources={"metadata": {"path": str(HERE)}})
    client.comm_open_handlers = {}  # this nbclient cannot parse ipywidgets 8 comm messages
    client.execute()
    if name == "widgets":
        # Saved widget state as JupyterLab writes it (model ids from the outputs).
        ids = [o["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] for c in nb.cells if c.cell_type == "code" for o in c.outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"version_major": 2, "version_minor": 0, "state": {i: {"model_name": "IntSliderModel", "model_module": "@jupyter-widgets/controls", "model_module_version": "2.0.0", "state": {"value": 5}} for i in ids}}}
    path = HERE / f"{name}.ipynb"
    nbformat.write(nb, path)
    print(f"{path.name}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    for name, cells in notebooks():
        execute(name, cells)
    cells, meta = dashboard()
    execute("dashboard", cells, meta)
