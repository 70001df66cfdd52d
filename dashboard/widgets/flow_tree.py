"""A flow drawn as a tree: each node is a job with its id, name and state.

Nodes hold ``JobLink``s (None for the "more children" line); the screen fills a node's children
when it is expanded, so the tree is read one bounded level at a time.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from dashboard.model import JobLink, JobLinks
from dashboard.sanitize import display_text
from dashboard.widgets.links_table import state_text

FlowNode = TreeNode[JobLink | None]


def node_label(link: JobLink, root_queue: str, *, this_job: bool = False) -> Text:
    """``id  name  state``, the queue when it is not the root's, a marker on the job opened."""
    text = display_text(link.id, limit=24, style="bold", say_how_much=False)
    text.append("  ")
    text.append_text(display_text(link.name, limit=24, say_how_much=False))
    text.append("  ")
    text.append_text(state_text(link))
    if link.queue != root_queue:
        text.append("  @", style="dim")
        text.append_text(display_text(link.queue, limit=20, style="dim", say_how_much=False))
    if this_job:
        text.append("  ◀", style="bold magenta")
    return text


class FlowTree(Tree[JobLink | None]):
    """Enter opens the job under the cursor (the screen does); space expands and collapses."""

    def __init__(self, **kwargs: str) -> None:
        super().__init__(Text("loading…"), data=None, **kwargs)  # type: ignore[arg-type]
        self.auto_expand = False
        self.guide_depth = 3
        self.filled: set[int] = set()
        self.root_queue = ""
        self.target: tuple[str, str] | None = None

    def label_for(self, link: JobLink) -> Text:
        """The label of a job's node."""
        return node_label(link, self.root_queue, this_job=(link.queue, link.id) == self.target)

    def fill(self, node: FlowNode, links: JobLinks, shown: int) -> None:
        """Add a node's children (once), and a line saying when there are more than ``shown``."""
        if node.id in self.filled:
            return
        self.filled.add(node.id)
        node.set_label(self.label_for(links.job))
        node.data = links.job
        for child in links.children:
            if child.has_children:
                node.add(self.label_for(child), data=child)
            else:
                node.add_leaf(self.label_for(child), data=child)
        if links.more_children:
            node.add_leaf(Text(f"… more children (the first {shown} are shown)", style="dim"))

    def child_for(self, node: FlowNode, queue: str, job_id: str) -> FlowNode | None:
        """The child node of ``node`` that holds that job, if it was read."""
        for child in node.children:
            if child.data is not None and (child.data.queue, child.data.id) == (queue, job_id):
                return child
        return None
