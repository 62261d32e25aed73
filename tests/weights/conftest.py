"""The paper model fixtures (a small model, its tokenizer, its registration as published) for the
download tests."""

from tests.model.paper.conftest import paper_test_model, paper_test_published, spm_file  # noqa: F401
