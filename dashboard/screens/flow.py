"""The flow of one job drawn as a tree, from the root of its flow down.

The path from the root to the job is read first (parent links) and opened; every other node
reads its children (one bounded level, ``FLOW_CHILDREN`` at most) when it is expanded.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.widgets import Static, Tree

from dashboard.keymap import FLOW_KEYS, bindings
from dashboard.model import JobLink
from dashboard.sanitize import display_text
from dashboard.screens.base import DashScreen
from dashboard.widgets.flow_tree import FlowNode, FlowTree
from dashboard.widgets.format import clock
from dashboard.widgets.key_bar import KeyBar

FLOW_CHILDREN = 50
"""Children read per node of the tree."""


class FlowScreen(DashScreen):
    """Enter opens the job under the cursor; space expands a node (reading its children)."""

    KEYS = FLOW_KEYS
    BINDINGS = bindings(FLOW_KEYS)

    def __init__(self, queue: str, job_id: str) -> None:
        super().__init__()
        self.queue = queue
        self.job_id = job_id
        self.loaded = False

    def compose(self) -> ComposeResult:
        """Status bar, a title line, the tree, footer."""
        yield self.status_bar()
        yield Static(display_text(f"flow of job {self.job_id}", limit=70), id="queue-title")
        yield FlowTree(id="flow")
        yield KeyBar()

    def on_mount(self) -> None:
        """Read the path to the job and show it."""
        self.query_one(FlowTree).focus()
        self.load()

    @work(exclusive=True, group="flow", exit_on_error=False)
    async def load(self) -> None:
        """Read the job's ancestors, then the children of each of them and of the job."""
        backend, client = self.dash.backend, self.dash.reader
        tree = self.query_one(FlowTree)
        path = await backend.read_flow_path(client, self.queue, self.job_id)
        tree.root_queue, tree.target = path[0][0], (self.queue, self.job_id)
        node: FlowNode = tree.root
        for depth, (queue, job_id) in enumerate(path):
            links = await backend.read_job_links(client, queue, job_id, FLOW_CHILDREN)
            if links is None:
                node.set_label(Text.assemble(display_text(job_id, limit=24), ("  gone", "dim")))
                break
            tree.fill(node, links, FLOW_CHILDREN)
            node.expand()
            if depth + 1 == len(path):
                break
            next_queue, next_id = path[depth + 1]
            found = tree.child_for(node, next_queue, next_id)
            if found is None:  # beyond the children read: shown anyway, it is on the path
                link = JobLink(queue=next_queue, id=next_id)
                found = node.add(tree.label_for(link), data=link)
            node = found
        tree.move_cursor(node)
        levels = len(path) - 1
        above = f", {levels} level{'s' * (levels != 1)} below the root" if levels else ", the root"
        title = display_text(f"flow of job {self.job_id}{above}", limit=60)
        title.append(f"  read {clock(time.time())}  enter: open, space: expand", style="dim")
        self.query_one("#queue-title", Static).update(title)
        self.loaded = True

    @on(Tree.NodeExpanded)
    def _expanded(self, event: Tree.NodeExpanded[JobLink | None]) -> None:
        if event.node.data is not None and event.node.id not in self.query_one(FlowTree).filled:
            self.load_children(event.node)

    @work(group="flow-children", exit_on_error=False)
    async def load_children(self, node: FlowNode) -> None:
        """Read one node's children (bounded) and add them."""
        link = node.data
        if link is None:
            return
        links = await self.dash.backend.read_job_links(
            self.dash.reader, link.queue, link.id, FLOW_CHILDREN
        )
        if links is not None:
            self.query_one(FlowTree).fill(node, links, FLOW_CHILDREN)

    @on(Tree.NodeSelected)
    def _selected(self, event: Tree.NodeSelected[JobLink | None]) -> None:
        event.stop()
        self._open(event.node.data)

    def _open(self, link: JobLink | None) -> None:
        if link is not None and link.exists:
            self.dash.open_job(link.queue, link.id)

    def action_open_job(self) -> None:
        """Open the job under the cursor."""
        node = self.query_one(FlowTree).cursor_node
        self._open(node.data if node is not None else None)

    def action_toggle_node(self) -> None:
        """Expand or collapse the node under the cursor."""
        self.query_one(FlowTree).action_toggle_node()

    def action_cursor(self, direction: str) -> None:
        """``j``/``k`` move like the arrows."""
        tree = self.query_one(FlowTree)
        if direction == "down":
            tree.action_cursor_down()
        else:
            tree.action_cursor_up()

    def action_back(self) -> None:
        """Back to the job."""
        self.dismiss()
