"""Document processing: PDF text, OCR, HTML, text and images into Document records.

detect.py      which extractor a file needs (from its bytes, via pipeline.sniff)
pdf.py         PDF and other PyMuPDF formats: reading order, per-page OCR decision
ocr_policy.py  the decision itself: (ocr?, reason), cheapest checks first
ocr.py         Tesseract through pytesseract: text and real word confidences
image.py       image files: bomb guard, TIFF pages, preprocessing
html.py        trafilatura main content with paragraph breaks
text.py        plain text and markdown: charset detection
cleanup.py     the clean-up every extractor shares (on pipeline/text.py)
options.py     how to extract: the extract config section plus the legacy tools' extras
document.py    one file -> one Document (extract_file)
pool.py        worker processes: per-document timeout, crash isolation, recycling; the
               Outcome of each task
extract.py     the stage (extract_all)
files.py       files named one by one, in input order (what the legacy tools run)
"""
