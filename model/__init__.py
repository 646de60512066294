"""The CLLM language model, its trainer, evaluation and generation."""
