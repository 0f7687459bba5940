"""Bundled fonts (a package so the .ttf files ship as package data).

DroidSansFallbackFull.ttf: Droid Sans Fallback, Copyright 2006-2010 Google Corp., Apache License 2.0
(the same licence as sociomap), taken unchanged from Debian's fonts-droid-fallback 6.0.1r16-1.1. It
gives CJK glyphs as the per-glyph fallback after DejaVu Sans, which the mapnik wheel ships.
"""
