"""The order of catalog, policy and roster versions, shared by the device and the hub."""


def version_order(version: str) -> tuple[tuple[int, int, str], ...]:
    """Dotted versions compare part by part, numbers as numbers: 2026.10 > 2026.9."""
    # isdigit() alone also takes "²", which int() refuses
    return tuple(
        (0, int(p), "") if p.isascii() and p.isdigit() else (1, 0, p) for p in version.split(".")
    )
