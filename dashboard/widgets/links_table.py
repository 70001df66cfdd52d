"""A job's parent and children in a flow, one row each with the job's state; enter opens one.
For a parent in waiting-children, a line names the child that blocks it and why."""

from __future__ import annotations

from rich.text import Text

from dashboard.model import JobLink, JobLinks
from dashboard.sanitize import display_text
from dashboard.widgets.keyed_table import KeyedTable

STATE_STYLES = {
    "failed": "red",
    "completed": "green",
    "active": "cyan",
    "waiting-children": "yellow",
}


def state_text(link: JobLink) -> Text:
    """The job's state, coloured; ``gone`` for a job that no longer exists."""
    if not link.exists:
        return Text("gone", style="dim")
    state = link.state or "no state"
    return Text(state, style=STATE_STYLES.get(state, ""))


def links_summary(links: JobLinks) -> Text:
    """One line above the table: what the job is linked to, and the keys that walk the flow."""
    parts = []
    if links.parent is not None:
        parts.append("a parent")
    if links.children:
        more = "+" if links.more_children else ""
        parts.append(f"{len(links.children)}{more} child{'ren' * (len(links.children) != 1)}")
    text = Text("flow: ", style="bold")
    text.append(" and ".join(parts) or "none")
    text.append("  (tab: pick, enter: open, u: parent, t: tree)", style="dim")
    return text


def blocked_line(links: JobLinks) -> Text | None:
    """For a parent in waiting-children: which child holds it and why (a failed child first,
    with its reason), and how many more it waits for; None for any other job."""
    if links.job.state != "waiting-children":
        return None
    pending = [child for child in links.children if child.pending]
    if not pending:
        more = " (beyond the children listed)" if links.more_children else ""
        return Text(f"waiting for children{more}", style="yellow")
    failed = [child for child in pending if child.state == "failed"]
    child = (failed or pending)[0]
    text = Text("blocked by child ", style="bold yellow")
    text.append_text(display_text(child.id, limit=14))
    text.append(" of ")
    text.append_text(display_text(child.queue, limit=14))
    text.append(": ")
    text.append_text(state_text(child))
    if child.state == "failed":
        text.append_text(display_text(f" ({child.failed_reason or 'no reason'})", limit=40))
        text.append(" retry or remove it", style="dim")
    if len(pending) > 1:
        text.append(f"  +{len(pending) - 1} more pending", style="dim")
    return text


class LinksTable(KeyedTable):
    """Rows keyed by their position: the parent first, then the children read."""

    COLUMNS = ("link", "queue", "id", "name", "state")

    def __init__(self, **kwargs: str) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.links: list[JobLink] = []

    @property
    def selected_link(self) -> JobLink | None:
        """The job under the cursor."""
        key = self.selected_key
        return self.links[int(key)] if key is not None and key.isdigit() else None

    def show(self, links: JobLinks) -> None:
        """Replace the rows: parent, children, and a last line when more children exist."""
        self.clear()
        rows: list[tuple[str, JobLink]] = []
        if links.parent is not None:
            rows.append(("parent", links.parent))
        rows.extend(("child", child) for child in links.children)
        self.links = [link for _, link in rows]
        for index, (relation, link) in enumerate(rows):
            self.add_row(
                Text(relation, style="bold" if relation == "parent" else ""),
                display_text(link.queue, limit=16, say_how_much=False),
                display_text(link.id, limit=14, say_how_much=False),
                display_text(link.name, limit=18, say_how_much=False),
                state_text(link),
                key=str(index),
            )
        if links.more_children:
            self.add_row(
                Text("…", style="dim"),
                Text(""),
                Text(""),
                Text("more children: see the flow (t)", style="dim"),
                Text(""),
                key="more",
            )
