"""Work units for xdist: chunks of consecutive cases per suite."""

from harness.distribute import cases_per_chunk, chunk_map, split_nodeid


def test_split_nodeid_recognises_xai_items_only():
    assert split_nodeid("testcases/a.xai.yaml::speed_50_003[sticker_added]") == ("testcases/a.xai.yaml", "speed_50_003")
    assert split_nodeid("testcases/a.xai.yaml::odd[id][original]") == ("testcases/a.xai.yaml", "odd[id]")
    assert split_nodeid("tests/test_x.py::test_y[1]") is None
    assert split_nodeid("testcases/a.xai.yaml") is None


def test_chunks_follow_case_order_per_suite():
    ids = [f"s.xai.yaml::c{i}[{v}]" for i in range(5) for v in ("original", "sticker_added")]
    ids += ["t.xai.yaml::x[original]", "tests/test_x.py::test_y"]
    chunks = chunk_map(ids, batch_size=8)  # 2 cases per chunk
    assert cases_per_chunk(8) == 2
    assert chunks["s.xai.yaml::c0[original]"] == chunks["s.xai.yaml::c1[sticker_added]"] == "s.xai.yaml::chunk0"
    assert chunks["s.xai.yaml::c2[original]"] == "s.xai.yaml::chunk1"
    assert chunks["s.xai.yaml::c4[sticker_added]"] == "s.xai.yaml::chunk2"
    assert chunks["t.xai.yaml::x[original]"] == "t.xai.yaml::chunk0"
    assert "tests/test_x.py::test_y" not in chunks
