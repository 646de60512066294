"""The language filter (clean.languages, clean.min_language_score): identified with the model
py3langid ships, counted with reason `language`, shown by `cllm status`; adversarial inputs."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_dataset_support import doc_id, make_text

from pipeline.clean import clean_documents, iter_clean_documents
from pipeline.config import CleanConfig, build_config
from pipeline.docstore import write_part
from pipeline.errors import ConfigError
from pipeline.filters import word_count
from pipeline.langid import identify, language_drop, sample
from pipeline.layout import DataRoot
from pipeline.records import FORMAT_VERSION, Document

TEXTS = {
    "de": "Die Stadt liegt am Ufer des Flusses, und im Sommer kommen viele Besucher, um die alte "
          "Brücke und den Markt zu sehen. Im Winter ist es ruhig; die Geschäfte schließen früh, "
          "und die Bewohner sitzen in der Küche, erzählen Geschichten und trinken warmen Tee.",
    "fr": "La ville se trouve au bord de la rivière, et en été beaucoup de visiteurs viennent "
          "voir le vieux pont et le marché. En hiver tout est calme; les magasins ferment tôt et "
          "les habitants restent dans la cuisine à raconter des histoires autour du feu.",
    "es": "La ciudad está a orillas del río, y en verano muchos visitantes vienen a ver el "
          "puente viejo y el mercado. En invierno todo está tranquilo; las tiendas cierran "
          "temprano y los vecinos se quedan en la cocina contando historias junto al fuego.",
    "ja": "その町は川のほとりにあり、夏には多くの観光客が古い橋と市場を見に来ます。冬は静かで、"
          "店は早く閉まり、住民は台所で温かいお茶を飲みながら昔話をします。",
    "zh": "这座城市位于河边，夏天有许多游客来参观古老的桥和市场。冬天很安静，商店很早就关门，"
          "居民们坐在厨房里喝着热茶讲故事。",
    "ru": "Город стоит на берегу реки, и летом сюда приезжает много туристов, чтобы увидеть "
          "старый мост и рынок. Зимой здесь тихо: магазины закрываются рано, а жители сидят на "
          "кухне, пьют горячий чай и рассказывают истории.",
}
ENGLISH = make_text(random.Random(1), 120)


def test_identifies_each_language_with_a_high_score() -> None:
    for code, text in {**TEXTS, "en": ENGLISH}.items():
        found, score = identify(text)
        assert (found, score > 0.9) == (code, True), (code, found, score)


def test_adversarial_inputs() -> None:
    assert identify("") == ("", 0.0)
    assert identify("1234 5678 -- 3.14 ### 42 !!! 2026-01-01") == ("", 0.0)  # no letters
    # an English header over a German body: the sample spreads over the text, not its head
    mixed = "Home | About | Contact | Sign in\n\n" + "\n\n".join([TEXTS["de"]] * 12)
    assert identify(mixed)[0] == "de"
    long = ENGLISH * 50
    assert len(sample(long)) <= 2000 + 3 and sample(long)[:100] == long[:100]
    assert sample("short") == "short"
    code, score, why = language_drop("1234 5678", ["en"], 0.5)
    assert (code, score) == ("", 0.0) and why.startswith("no language")
    code, _, why = language_drop(TEXTS["fr"], ["en", "de"], 0.5)
    assert code == "fr" and why.startswith("fr (") and "not in ['en', 'de']" in why
    short = "The bridge is old."  # English, but too little of it for a sure score
    code, score, why = language_drop(short, ["en"], 0.9999)
    assert code == "en" and score < 0.9999 and why == f"en score {score:.2f} < 0.9999"
    assert language_drop(ENGLISH, ["en"], 0.5)[2] is None


def _doc(i: int, text: str, lang: str = "") -> Document:
    return Document(id=doc_id(f"lang-{i}"), source=f"/multi/{i}.txt", mime="text/plain",
                    text=text, lang=lang, created_at="2026-01-01")


def test_clean_drops_other_languages_with_a_counted_reason(root: DataRoot,
                                                           cli_env: dict[str, str]) -> None:
    docs = [_doc(0, ENGLISH, lang="eng+deu"), _doc(1, TEXTS["de"] * 2), _doc(2, TEXTS["ja"] * 3),
            _doc(3, TEXTS["ru"] * 2), _doc(4, make_text(random.Random(2), 90))]
    write_part(root.docs, docs)
    cfg = build_config([{"clean": {"workers": 1, "languages": ["en", "de"], "min_words": 0}}])
    stats = clean_documents(cfg, root, progress=False)
    assert stats.kept == 3 and dict(stats.dropped) == {"language": 2}
    kept = {d.source: d for d in iter_clean_documents(root, ["part-00000.jsonl.zst"])}
    assert {s: d.lang for s, d in kept.items()} == \
        {"/multi/0.txt": "en", "/multi/1.txt": "de", "/multi/4.txt": "en"}
    assert all(d.stats["lang_score"] > 0.9 for d in kept.values())
    status = subprocess.run([str(Path(sys.executable).parent / "cllm"), "--root", str(root.path),
                             "status"], env=cli_env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "language 2" in status.stdout, status.stdout


def test_without_languages_every_document_is_still_identified(root: DataRoot) -> None:
    write_part(root.docs, [_doc(0, TEXTS["de"] * 2, lang="eng+deu"), _doc(1, ENGLISH)])
    cfg = build_config([{"clean": {"workers": 1, "min_words": 0}}])
    assert clean_documents(cfg, root, progress=False).kept == 2  # none dropped
    docs = list(iter_clean_documents(root, ["part-00000.jsonl.zst"]))
    assert [d.lang for d in docs] == ["de", "en"]
    assert all(d.stats["lang_score"] > 0.9 for d in docs)


GERMAN_PAGES = [
    "Die Stadt liegt am Ufer des Flusses, und im Sommer kommen viele Besucher, um die alte "
    "Brücke und den Markt zu sehen. Die Geschäfte öffnen früh am Morgen.",
    "Im Winter ist es ruhig; die Bewohner sitzen in der Küche, erzählen Geschichten und "
    "trinken warmen Tee, während draußen der Schnee auf die Dächer fällt.",
    "Wer den Turm besteigen möchte, braucht eine Karte aus dem Rathaus. Von oben sieht man "
    "bei klarem Wetter die Berge im Süden und die Wälder hinter dem See.",
]


def _bilingual_pdf(path: Path) -> None:
    """Four English pages, then three German ones, and a page with no words."""
    import fitz

    pdf = fitz.open()
    rng = random.Random(5)
    for text in [make_text(rng, 90) for _ in range(4)] + GERMAN_PAGES + ["12 34 56"]:
        page = pdf.new_page()
        assert page.insert_textbox(fitz.Rect(50, 50, 550, 800), text, fontsize=10) >= 0
    pdf.save(path)


def test_a_bilingual_pdf_gets_a_language_per_page_and_the_majority(root: DataRoot,
                                                                   tmp_path: Path) -> None:
    from docproc.document import extract_file
    from docproc.options import ExtractOptions

    _bilingual_pdf(tmp_path / "manual.pdf")
    doc = extract_file(tmp_path / "manual.pdf", ExtractOptions(ocr="never"))
    assert len(doc.page_info) == 8 and not any(p.lang for p in doc.page_info)
    write_part(root.docs, [doc])
    cfg = build_config([{"clean": {"workers": 1}}])
    assert clean_documents(cfg, root, progress=False).kept == 1
    (cleaned,) = iter_clean_documents(root, ["part-00000.jsonl.zst"])
    assert [p.lang for p in cleaned.page_info] == ["en"] * 4 + ["de"] * 3 + [""]
    assert all(p.lang_score > 0.5 for p in cleaned.page_info[:7])
    assert cleaned.page_info[7].lang_score is None
    assert cleaned.lang == "en" and cleaned.stats["lang_score"] > 0.9
    cfg = build_config([{"clean": {"workers": 1, "languages": ["de"]}}])
    shutil.rmtree(root.state)  # clean again, keeping only German: the majority decides
    stats = clean_documents(cfg, root, progress=False)
    assert stats.kept == 0 and dict(stats.dropped) == {"language": 1}


def test_a_record_of_format_1_reads_with_no_page_languages() -> None:
    old = {"v": 1, "id": "x", "source": "/a.pdf", "mime": "application/pdf", "text": "t",
           "page_info": [{"number": 1, "chars": 1, "ocr": False, "reason": "has_text"}]}
    assert Document.from_dict(old).page_info[0].lang == ""
    assert Document.from_dict(old).to_dict()["v"] == FORMAT_VERSION == 2


def test_cjk_text_is_counted_in_words_and_kept(root: DataRoot) -> None:
    assert word_count("这座城市位于河边") == 8
    assert word_count("東京 Tower は高い, very tall") == 2 + 1 + 3 + 2  # kana and Han apart
    assert word_count("plain ascii words") == 3 and word_count("Grüße aus Köln") == 3
    assert word_count("한국어는 띄어쓰기를 합니다") == 3  # Korean: by its spaces
    # one line each with no space in it: one "word" apiece when counted by spaces
    docs = [_doc(0, TEXTS["zh"] * 5), _doc(1, TEXTS["ja"] * 4), _doc(2, "。、「」・" * 50)]
    write_part(root.docs, docs)
    stats = clean_documents(build_config([{"clean": {"workers": 1, "min_alpha_ratio": 0.0,
                                                     "max_symbol_ratio": 1.0}}]),
                            root, progress=False)
    # CJK punctuation is no word: 250 characters of it are still too few words
    assert stats.kept == 2 and dict(stats.dropped) == {"too_few_words": 1}
    kept = list(iter_clean_documents(root, ["part-00000.jsonl.zst"]))
    assert [d.lang for d in kept] == ["zh", "ja"]


@pytest.mark.parametrize(("key", "value"), [("languages", ["EN"]), ("languages", ["english"]),
                                            ("min_language_score", 1.5)])
def test_bad_language_settings_are_refused_naming_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"clean.{key}"):
        CleanConfig(**{key: value})
