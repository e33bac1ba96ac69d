from pathlib import Path


def test_add_status_checkout_roundtrip(repo, cli, tree):
    tree({"data/raw.csv": "a,b\n1,2\n", "data/images/x/1.txt": "one", "data/images/y/2.txt": "two"})
    cli("add", "data/raw.csv", "data/images")
    assert Path("data/raw.csv.mlops").is_file() and Path("data/images.mlops").is_file()
    status = cli("status", "--check")
    assert "up to date" in status.stderr
    Path("data/images/x/1.txt").write_text("changed")
    result = cli("status", "--check", code=1)
    assert "modified\tdata/images" in result.stdout
