"""axe-core in a Playwright page: the JS comes from the axe-playwright-python wheel (the
`dev` extra, hashed in requirements/dev.txt), never from the network. The page's CSP forbids
inline scripts, so the source is evaluated through the DevTools protocol, as Playwright's own
evaluate does."""

from importlib import resources

BLOCKING = ("serious", "critical")


def axe_source() -> str:
    return (resources.files("axe_playwright_python") / "axe.min.js").read_text(encoding="utf-8")


def violations(page, impacts: tuple[str, ...] = BLOCKING) -> list[dict]:
    """The violations of the given impacts on the page as it is now, each as the rule id,
    its help text and the offending nodes' selectors and summaries."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source())
    result = page.evaluate(
        "() => axe.run(document, {resultTypes: ['violations']})"
        ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => ({target: n.target.join(' '), html: n.html.slice(0, 200),"
        " summary: n.failureSummary}))})))"
    )
    return [v for v in result if v["impact"] in impacts]


def describe(found: list[dict]) -> str:
    lines = []
    for v in found:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        lines += [f"    {n['target']}: {n['html']}\n      {n['summary']}" for n in v["nodes"]]
    return "\n".join(lines)
