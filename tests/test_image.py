"""The node image's recipe: where its packages come from and how it is tagged."""

from __future__ import annotations

import re

from harness.cluster import image


def test_mirror_from_deb822_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")
    assert image.apt_mirror(tmp_path) == "http://mirror.example/debian"


def test_mirror_from_one_line_sources_list(tmp_path):
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n")
    assert image.apt_mirror(tmp_path) == "http://one.example/debian"


def test_no_sources_falls_back_to_debians_own(tmp_path):
    assert image.apt_mirror(tmp_path) == image.DEFAULT_MIRROR


def test_the_tag_is_a_hash_of_the_recipe(monkeypatch):
    tag = image.default_image()
    assert re.fullmatch(r"splitbrain-node:[0-9a-f]{12}", tag)
    assert image.default_image() == tag
    monkeypatch.setitem(image._RECIPE, "packages", (*image.PACKAGES, "curl"))
    assert image.default_image() != tag
