"""A tiny raster canvas (filled rectangles, a 5x7 capitals font) written as a palette PNG, in pure Python.

For the benchmark's chart (tests/bench/report_docs.py): a few bars and labels do not need matplotlib and
numpy in the project's requirements. Text is drawn in capitals; unknown characters as blanks.
"""
import struct
import zlib

FONT = {  # 5 columns x 7 rows, each row's bits left to right
    "0": (14, 17, 19, 21, 25, 17, 14), "1": (4, 12, 4, 4, 4, 4, 14), "2": (14, 17, 1, 2, 4, 8, 31),
    "3": (31, 2, 4, 2, 1, 17, 14), "4": (2, 6, 10, 18, 31, 2, 2), "5": (31, 16, 30, 1, 1, 17, 14),
    "6": (6, 8, 16, 30, 17, 17, 14), "7": (31, 1, 2, 4, 8, 8, 8), "8": (14, 17, 17, 14, 17, 17, 14),
    "9": (14, 17, 17, 15, 1, 2, 12), "A": (14, 17, 17, 17, 31, 17, 17), "B": (30, 17, 17, 30, 17, 17, 30),
    "C": (14, 17, 16, 16, 16, 17, 14), "D": (28, 18, 17, 17, 17, 18, 28), "E": (31, 16, 16, 30, 16, 16, 31),
    "F": (31, 16, 16, 30, 16, 16, 16), "G": (14, 17, 16, 23, 17, 17, 15), "H": (17, 17, 17, 31, 17, 17, 17),
    "I": (14, 4, 4, 4, 4, 4, 14), "J": (7, 2, 2, 2, 2, 18, 12), "K": (17, 18, 20, 24, 20, 18, 17),
    "L": (16, 16, 16, 16, 16, 16, 31), "M": (17, 27, 21, 21, 17, 17, 17), "N": (17, 17, 25, 21, 19, 17, 17),
    "O": (14, 17, 17, 17, 17, 17, 14), "P": (30, 17, 17, 30, 16, 16, 16), "Q": (14, 17, 17, 17, 21, 18, 13),
    "R": (30, 17, 17, 30, 20, 18, 17), "S": (15, 16, 16, 14, 1, 1, 30), "T": (31, 4, 4, 4, 4, 4, 4),
    "U": (17, 17, 17, 17, 17, 17, 14), "V": (17, 17, 17, 17, 17, 10, 4), "W": (17, 17, 17, 21, 21, 21, 10),
    "X": (17, 17, 10, 4, 10, 17, 17), "Y": (17, 17, 17, 10, 4, 4, 4), "Z": (31, 1, 2, 4, 8, 16, 31),
    " ": (0,) * 7, ".": (0, 0, 0, 0, 0, 12, 12), ",": (0, 0, 0, 0, 12, 4, 8), ":": (0, 12, 12, 0, 12, 12, 0),
    "/": (0, 1, 2, 4, 8, 16, 0), "-": (0, 0, 0, 31, 0, 0, 0), "+": (0, 4, 4, 31, 4, 4, 0),
    "%": (24, 25, 2, 4, 8, 19, 3), "(": (2, 4, 8, 8, 8, 4, 2), ")": (8, 4, 2, 2, 2, 4, 8),
    "=": (0, 0, 31, 0, 31, 0, 0), "<": (2, 4, 8, 16, 8, 4, 2), ">": (8, 4, 2, 1, 2, 4, 8),
    "_": (0, 0, 0, 0, 0, 0, 31), "x": (0, 0, 17, 10, 4, 10, 17), "#": (10, 10, 31, 10, 31, 10, 10),
}
GLYPH_W, GLYPH_H = 5, 7


class Canvas:
    """Pixels are indexes into `palette` (a list of (r, g, b)); index 0 is the background."""

    def __init__(self, width: int, height: int, palette: list[tuple[int, int, int]]):
        self.width, self.height, self.palette = width, height, palette
        self.rows = [bytearray(width) for _ in range(height)]

    def rect(self, x: int, y: int, w: int, h: int, color: int) -> None:
        x0, x1 = max(0, x), min(self.width, x + w)
        if x1 <= x0:
            return
        for row in self.rows[max(0, y):min(self.height, y + h)]:
            row[x0:x1] = bytes([color]) * (x1 - x0)

    def text(self, x: int, y: int, text: str, color: int, *, scale: int = 2) -> int:
        """Draws `text` with its top-left corner at (x, y); returns the x after it."""
        for char in text:
            glyph = FONT.get(char if char == "x" else char.upper(), FONT[" "])
            for row_index, bits in enumerate(glyph):
                for col in range(GLYPH_W):
                    if bits & (1 << (GLYPH_W - 1 - col)):
                        self.rect(x + col * scale, y + row_index * scale, scale, scale, color)
            x += (GLYPH_W + 1) * scale
        return x

    @staticmethod
    def text_width(text: str, *, scale: int = 2) -> int:
        return len(text) * (GLYPH_W + 1) * scale

    def png(self) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 3, 0, 0, 0)  # 8-bit palette indexes
        palette = b"".join(bytes(color) for color in self.palette)
        raw = b"".join(b"\x00" + bytes(row) for row in self.rows)  # filter 0 on every row
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"PLTE", palette)
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
