"""
Reading PNG images in tests, with the standard library only (zlib): the
size from the header, and the pixels of 8-bit RGB, RGBA and palette
images, not interlaced (what rrdtool, through cairo, and Chromium's
screenshots write). Enough to check what a graph shows.
"""

import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


class NotPNG(ValueError):
    pass


def chunks(data):
    if not data.startswith(SIGNATURE):
        raise NotPNG("no PNG signature")
    at = len(SIGNATURE)
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        crc, = struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise NotPNG(f"bad CRC in {kind!r}")
        yield kind, body
        at += 12 + length
        if kind == b"IEND":
            return
    raise NotPNG("no IEND")


def size(data):
    """(width, height) from the IHDR, checking every chunk's CRC."""
    found = None
    for kind, body in chunks(data):
        if kind == b"IHDR":
            found = struct.unpack(">II", body[:8])
    if found is None:
        raise NotPNG("no IHDR")
    return found


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


class Image:
    """The pixels: C{pixel(x, y)} is (r, g, b)."""

    def __init__(self, data):
        idat, palette = [], None
        for kind, body in chunks(data):
            if kind == b"IHDR":
                width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            elif kind == b"PLTE":
                palette = body
            elif kind == b"IDAT":
                idat.append(body)
        if depth != 8 or interlace or colour not in (2, 3, 6):
            raise NotPNG(f"unsupported: depth {depth}, colour {colour}, interlace {interlace}")
        channels = {2: 3, 3: 1, 6: 4}[colour]
        raw = zlib.decompress(b"".join(idat))
        stride = width * channels
        rows, previous = [], bytearray(stride)
        for y in range(height):
            start = y * (stride + 1)
            kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
            for i in range(stride):
                left = line[i - channels] if i >= channels else 0
                up = previous[i]
                corner = previous[i - channels] if i >= channels else 0
                if kind == 1:
                    line[i] = (line[i] + left) & 0xFF
                elif kind == 2:
                    line[i] = (line[i] + up) & 0xFF
                elif kind == 3:
                    line[i] = (line[i] + (left + up) // 2) & 0xFF
                elif kind == 4:
                    line[i] = (line[i] + _paeth(left, up, corner)) & 0xFF
            rows.append(bytes(line))
            previous = line
        self.width, self.height = width, height
        self._rows, self._channels, self._palette = rows, channels, palette

    def pixel(self, x, y):
        row, c = self._rows[y], self._channels
        if c == 1:
            i = row[x] * 3
            return tuple(self._palette[i:i + 3])
        return tuple(row[x * c:x * c + 3])

    def count(self, colour, box, tolerance=8):
        """How many pixels in C{box} (left, top, right, bottom) are near C{colour} (r, g, b)."""
        left, top, right, bottom = box
        n = 0
        for y in range(top, bottom):
            for x in range(left, right):
                if all(abs(a - b) <= tolerance for a, b in zip(self.pixel(x, y), colour)):
                    n += 1
        return n

    def columns(self, colour, tolerance=8):
        """How many pixels near C{colour} each column holds."""
        found = []
        for x in range(self.width):
            found.append(sum(1 for y in range(self.height)
                             if all(abs(a - b) <= tolerance
                                    for a, b in zip(self.pixel(x, y), colour))))
        return found


def rgb(hex_colour):
    return tuple(int(hex_colour[i:i + 2], 16) for i in (0, 2, 4))
