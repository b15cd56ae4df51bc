"""The one file-name mapping: which files an environment reads, which applications a name denotes."""

from __future__ import annotations

from config_server.content import file_names


def test_search_order_reads_profile_files_first_and_the_shared_files_below_each_tier():
    assert file_names.search_order(["orders"], ["prod"], ["", "config"]) == [
        ("config/orders-prod", "prod"),
        ("orders-prod", "prod"),
        ("config/application-prod", "prod"),
        ("application-prod", "prod"),
        ("config/orders", None),
        ("orders", None),
        ("config/application", None),
        ("application", None),
    ]


def test_a_changed_file_names_its_applications_or_all_of_them():
    assert file_names.applications_reading("orders-prod.yml") == ["orders", "orders-prod"]
    assert file_names.applications_reading("application-dev.yml") is None
    assert file_names.applications_reading("nginx.conf") is None


def test_listings_split_profiles_from_the_shortest_application_and_keep_shared_profiles_apart():
    stems = ["orders", "orders-eu-prod", "my-service", "application", "application-dev"]
    assert file_names.applications_from_stems(stems) == {"my-service": [], "orders": ["eu-prod"]}
    assert file_names.shared_profiles(["application-dev.yml", "application.yml", "x.md"]) == {"dev"}


def test_search_paths_expand_to_folders_and_match_back():
    assert file_names.search_path_folders("{application}/{profile}", "orders", ("a", "b"), "main") == [
        "orders/a",
        "orders/b",
    ]
    match = file_names.search_path_pattern("{application}/*").fullmatch("payments/eu")
    assert match is not None and match.group("application") == "payments"
    assert file_names.listed_search_folders(["config", "{application}", "x/*"]) == (["", "config"], True)
