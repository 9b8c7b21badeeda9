# SPDX-License-Identifier: GPL-3.0-or-later
"""`python -m face_anything_addon FOOTAGE -o OUTDIR`: see cli.py."""
import sys

from .cli import main

sys.exit(main())
