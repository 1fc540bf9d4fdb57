"""Base45 (RFC 9285): bytes as text in QR codes' alphanumeric mode, the densest mode that
every phone scanner reads back as the same text (binary mode gets "helpfully" decoded)."""

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUES = {ch: i for i, ch in enumerate(ALPHABET)}


def b45encode(data: bytes) -> str:
    out: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        out += (ALPHABET[c], ALPHABET[d], ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += (ALPHABET[c], ALPHABET[d])
    return "".join(out)


def b45decode(text: str) -> bytes:
    """Raises ValueError for characters outside the alphabet or impossible groups."""
    try:
        values = [_VALUES[ch] for ch in text]
    except KeyError as error:
        raise ValueError(f"{error.args[0]!r} is not a base45 character") from None
    if len(values) % 3 == 1:
        raise ValueError("base45 text cannot have 3n+1 characters")
    out = bytearray()
    for i in range(0, len(values), 3):
        group = values[i : i + 3]
        n = sum(v * 45**k for k, v in enumerate(group))
        if len(group) == 3:
            if n > 0xFFFF:
                raise ValueError("base45 group out of range")
            out += n.to_bytes(2, "big")
        else:
            if n > 0xFF:
                raise ValueError("base45 group out of range")
            out.append(n)
    return bytes(out)
