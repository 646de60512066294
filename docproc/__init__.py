"""Document processing: PDF text, OCR, HTML, text and images into Document records."""
