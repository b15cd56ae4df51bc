"""A plain folder (not a git repository) is served as-is, versioned by a content hash."""

import os


def test_plain_folder_is_served_with_content_hash_version(tmp_path, serve, http):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "application.yml").write_text("a: 1\n")
    (folder / "svc-prod.yml").write_text("b: 2\n")
    server = serve(folder)
    env = http.get(f"{server.url}/svc/prod").json()
    assert [ps["source"] for ps in env["propertySources"]] == [{"b": 2}, {"a": 1}]
    first = env["version"]
    assert len(first) == 40
    (folder / "svc-prod.yml").write_text("b: 3\n")
    env = http.get(f"{server.url}/svc/prod").json()
    assert env["version"] != first
    assert env["propertySources"][0]["source"] == {"b": 3}


def test_same_content_same_version(tmp_path, serve, http):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "application.yml").write_text("a: 1\n")
    server = serve(folder)
    first = http.get(f"{server.url}/svc/default").json()["version"]
    os.utime(folder / "application.yml", (1, 1))
    assert http.get(f"{server.url}/svc/default").json()["version"] == first


def test_folder_has_only_its_default_label(tmp_path, serve, http):
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "application.yml").write_text("a: 1\n")
    server = serve(folder)
    assert http.get(f"{server.url}/svc/default/main").status_code == 200
    assert http.get(f"{server.url}/svc/default/other").status_code == 404


def test_symlink_leaving_the_folder_is_not_served(tmp_path, serve, http):
    folder = tmp_path / "plain"
    folder.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret\n")
    (folder / "application.yml").write_text("a: 1\n")
    (folder / "leak.txt").symlink_to(secret)
    (folder / "svc.yml").symlink_to(tmp_path / "elsewhere.yml")
    (tmp_path / "elsewhere.yml").write_text("x: outside\n")
    server = serve(folder)
    assert http.get(f"{server.url}/svc/default/main/leak.txt").status_code == 404
    env = http.get(f"{server.url}/svc/default").json()
    assert all("outside" not in str(ps["source"]) for ps in env["propertySources"])
