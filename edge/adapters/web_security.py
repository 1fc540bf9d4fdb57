"""The security headers both web applications send, the terminal UI (`web_ui/app.py`) and
the county console (`sync/hub/console.py`): nothing framed, no MIME sniffing, no referrer,
no camera or microphone, and a Content Security Policy that each gives for itself (the
terminal runs its own scripts, the console none)."""

COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def security_headers(*policy: str) -> dict[str, str]:
    """Every header to send, the Content Security Policy made of `policy`'s directives."""
    return {"Content-Security-Policy": "; ".join(policy), **COMMON_HEADERS}


# Host names the terminal UI answers to whatever is configured: its own browser on the
# same machine. Any other `Host` (a DNS-rebinding page in the kiosk browser, which the
# browser sends to 127.0.0.1 under the attacker's name) is refused.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def host_name(host_header: str) -> str:
    """The name in a `Host` header, without its port, lower case ('[::1]:8080' -> '::1')."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def host_allowed(host_header: str | None, extra: frozenset[str] | set[str] = frozenset()) -> bool:
    if not host_header:
        return False
    name = host_name(host_header)
    return name in LOOPBACK_HOSTS or name in {h.strip().lower() for h in extra}


def safe_local_path(target: str | None) -> str | None:
    """`target` if it is a path on this site, else None: a redirect to it can never leave
    the site. Refused: anything not starting with a single '/' ('//evil', '/\\evil'), and
    any control character, whitespace or backslash anywhere, since browsers drop tabs and
    line breaks from URLs ('/\\t/evil' becomes '//evil') and read '\\' as '/'; a CR or LF
    would also split the Location header."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return None
    if any(
        ch.isspace() or ch == "\\" or ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in target
    ):
        return None
    return target


def json_depth(value: object) -> int:
    """How deeply `value` (parsed JSON) nests lists and objects; without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in item)
    return deepest
