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
