"""Virtual NFC readers: emulated reader chips behind nfcpy's unmodified drivers.

``field`` is the virtual RF field the chips and virtual tags share; ``usb`` is the seam a
driver talks through. The chip emulators and the cross-process field broker live beside
them, one module each.
"""
