"""Test-wide settings: fast mode, a repository-local cache, a headless matplotlib."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("COURSEKIT_FAST", "1")
os.environ.setdefault("COURSEKIT_CACHE", str(ROOT / ".coursekit" / "cache"))
os.environ.setdefault("MPLBACKEND", "Agg")
