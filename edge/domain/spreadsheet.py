"""Cells of the CSV files the terminal and the county hub export, safe to open in a
spreadsheet: a text cell that a spreadsheet would take for a formula (CSV injection) is
written with a leading apostrophe, which shows it as the text it is. One function, used by
every CSV export."""

# What starts a formula in Excel, WPS or LibreOffice: = + - @, and a TAB, CR or LF before
# one (the cell is trimmed before it is read); and, cheaply, the full-width forms a Chinese
# input method types (＝ ＋ － ＠), in case a spreadsheet reads them as the narrow ones.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")


def safe_cell(value: object) -> object:
    """`value` as a CSV cell: text starting like a formula gets a leading apostrophe;
    numbers (integer fen, negative ones too) and everything else stay as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value
