"""Hardware behind small interfaces, each chosen by URL (see drivers/README.md).

- `drivers.cards`: insurance card readers (`card_reader_for_url`: `pcsc://`, `emulated://`)
  and the virtual cards testers insert, also served to a real pcscd through vpcd.
- `drivers.vouchers` and `drivers.scanner`: signed QR e-vouchers and the serial scanner.
- `drivers.receipt`, `drivers.escpos` and `drivers.printer`: the receipt layout, its
  ESC/POS bytes and the serial (or emulated) receipt printer.
"""
