"""`quickadapt serve`: the HTTP contract (DESIGN.md, Service) through fastapi's TestClient on real
CLINC150 texts with minilm and tiny PNGs with conv4, refusals as one line of JSON with a 4xx code,
a fit model served as `predict` answers, tasks kept across a restart, and the real command."""
import base64
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from cli_helpers import assert_bad_input, run
from quickadapt.data import load_dataset
from quickadapt.serve import Limits, TaskStore, create_app
from quickadapt.serve.state import State

INTENTS = ["balance", "book_flight", "weather", "alarm", "translate", "pin_change"]


@pytest.fixture(scope="module")
def clinc():
    """5 training utterances and 5 test utterances of each of the six intents, as request JSON."""
    train, test = load_dataset("builtin:clinc150-train"), load_dataset("builtin:clinc150-test")
    examples = [{"text": train.inputs[i], "label": c} for c in INTENTS for i in np.flatnonzero(train.labels == c)[:5]]
    held_out = [(test.inputs[i], c) for c in INTENTS for i in np.flatnonzero(test.labels == c)[:5]]
    return examples, held_out


@pytest.fixture(scope="module")
def client():
    return TestClient(create_app(TaskStore(Limits(max_body_mb=0.05, max_inputs=40, max_examples=100))))


@pytest.fixture(scope="module")
def task(client, clinc):
    r = client.post("/v1/tasks", json={"name": "intents", "encoder": "minilm", "examples": clinc[0]})
    assert r.status_code == 201, r.text
    return r.json()


def assert_refused(r, status, fragment):
    """The status, and one line of JSON `{"error": ...}` naming the problem: no traceback, no 500."""
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and "Traceback" not in r.text, body
    assert fragment.lower() in body["error"].lower(), body["error"]


def png(colour, shift=0, size=16) -> str:
    img = Image.new("RGB", (size, size), colour)
    for x in range(shift, shift + 4):
        img.putpixel((x, x), (255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_a_task_adapts_answers_learns_more_and_goes(client, clinc, task):
    examples, held_out = clinc
    assert client.get("/healthz").json()["status"] == "ok"
    assert task["task_id"] and task["adapt_ms"] > 0 and task["encoder"] == "minilm" and task["strategy"] == "probe"
    assert (task["n_examples"], task["n_classes"], task["labels"]) == (30, 6, sorted(INTENTS))
    tid = task["task_id"]
    assert client.get(f"/v1/tasks/{tid}").json() == task
    assert tid in [t["task_id"] for t in client.get("/v1/tasks").json()["tasks"]]

    r = client.post(f"/v1/tasks/{tid}/predict", json={"inputs": [t for t, _ in held_out], "top_k": 2})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) == len(held_out)
    assert np.mean([p["label"] == c for p, (_, c) in zip(predictions, held_out)]) >= 0.8  # 5 shots of 6 intents
    for p in predictions:
        assert set(p["scores"]) == set(INTENTS) and abs(sum(p["scores"].values()) - 1) < 1e-4
        assert p["score"] == max(p["scores"].values()) == p["scores"][p["label"]]
        assert [t["label"] for t in p["top"]] == sorted(p["scores"], key=p["scores"].get, reverse=True)[:2]
    # the library's own answer on the same examples
    from quickadapt import FewShotClassifier

    clf = FewShotClassifier(encoder="minilm").fit([e["text"] for e in examples], [e["label"] for e in examples])
    assert [p["label"] for p in predictions] == clf.predict([t for t, _ in held_out]).tolist()

    more = [{"text": "hello there", "label": "greeting"}, {"text": "good morning to you", "label": "greeting"}]
    r = client.post(f"/v1/tasks/{tid}/examples", json={"examples": more})
    assert r.status_code == 200, r.text
    assert (r.json()["n_examples"], r.json()["n_classes"]) == (32, 7) and "greeting" in r.json()["labels"]
    r = client.post(f"/v1/tasks/{tid}/predict", json={"inputs": ["hello, good morning"]})
    assert r.json()["predictions"][0]["label"] == "greeting"

    assert client.delete(f"/v1/tasks/{tid}").json() == {"task_id": tid, "deleted": True}
    assert_refused(client.get(f"/v1/tasks/{tid}"), 404, "no task")
    assert_refused(client.post(f"/v1/tasks/{tid}/predict", json={"inputs": ["hi"]}), 404, "no task")


def test_tasks_share_one_encoder_and_numbers_stay_numbers(client, clinc):
    examples = [dict(e, label=INTENTS.index(e["label"])) for e in clinc[0][:10]]
    r = client.post("/v1/tasks", json={"name": "numbered", "examples": examples})
    assert r.status_code == 201 and r.json()["labels"] == [0, 1], r.text
    answer = client.post(f"/v1/tasks/{r.json()['task_id']}/predict", json={"inputs": [clinc[1][0][0]]}).json()
    assert answer["predictions"][0]["label"] == 0 and set(answer["predictions"][0]["scores"]) == {"0", "1"}
    assert client.post("/v1/tasks", json={"name": "another", "examples": clinc[0]}).status_code == 201
    store = client.app.state.store
    models = [t.classifier.model_ for t in store.all() if t.encoder == "minilm"]
    assert len(models) >= 2 and len({id(m.encoder) for m in models}) == 1


def test_abstaining(client, clinc):
    tid = client.post("/v1/tasks", json={"name": "x", "examples": clinc[0]}).json()["task_id"]
    r = client.post(f"/v1/tasks/{tid}/predict", json={"inputs": ["what's my balance"], "threshold": 1.0,
                                                       "none_label": "unsure"})
    assert r.json()["predictions"][0]["label"] == "unsure"
    assert_refused(client.post(f"/v1/tasks/{tid}/predict", json={"inputs": ["hi"], "abstain": True}), 400,
                   "no calibrated abstain threshold")
    assert_refused(client.post(f"/v1/tasks/{tid}/predict", json={"inputs": ["hi"], "threshold": 2}), 400,
                   "between 0 and 1")
    # a client meaning "abstain" got every answer withheld: true was read as the threshold 1.0 ("0.5" as 0.5)
    for not_a_number in (True, "0.5"):
        assert_refused(client.post(f"/v1/tasks/{tid}/predict", json={"inputs": ["hi"], "threshold": not_a_number}),
                       422, "threshold: input should be a valid number")
    r = client.post("/v1/tasks", json={"name": "cv", "cv": 3, "examples": clinc[0]})
    assert r.status_code == 201 and 0 < r.json()["cv_accuracy"] <= 1 and 0 < r.json()["threshold"] < 1
    r = client.post(f"/v1/tasks/{r.json()['task_id']}/predict", json={"inputs": ["what's my balance"], "abstain": True})
    assert r.status_code == 200 and r.json()["predictions"][0]["label"] in INTENTS + ["__none__"]


def two(label_a="a", label_b="b", **override):
    examples = [{"text": "first example", "label": label_a}, {"text": "second example", "label": label_b}]
    return {"name": "t", "examples": examples, **override}


@pytest.mark.parametrize("body, status, fragment", [
    (two("a", "a"), 400, "found 1 class"),
    ({"name": "t", "examples": []}, 400, "examples is empty"),
    ({"name": "t", "examples": [{"text": "x", "label": "a"}, {"text": "  ", "label": "b"}]}, 400,
     "examples[1] is empty text"),
    ({"name": "t", "examples": [{"image": "%%%", "label": "a"}, {"image": png((0, 0, 0)), "label": "b"}]}, 400,
     "examples[0] is not valid base64"),
    ({"name": "t", "examples": [{"image": base64.b64encode(b"not an image").decode(), "label": "a"},
                                {"image": png((0, 0, 0)), "label": "b"}]}, 400, "examples[0]: not a readable image"),
    ({"name": "t", "examples": [{"text": "x", "label": "a"}, {"image": png((0, 0, 0)), "label": "b"}]}, 400,
     "examples[1] is an image but the task's examples are text"),
    ({"name": "t", "examples": [{"text": "x", "image": png((0, 0, 0)), "label": "a"}]}, 400, "one of text or image"),
    (two(encoder="bert"), 400, "unknown encoder 'bert'"),
    (two(encoder="efficientnet-lite0"), 400, "reads image"),
    (two(strategy="finetune"), 400, "strategy 'finetune'"),
    (two("a", 1), 400, "examples[1].label is a number but the task's labels are text"),
    (two("a", ""), 400, "examples[1].label must be a class name"),
    (two("a", None), 400, "examples[1].label must be a class name"),
    ({"name": "t", "examples": [{"text": 3, "label": "a"}, {"text": "x", "label": "b"}]}, 400,
     "examples[0] must be text"),
    ({"name": "t", "examples": [{"text": "x"}]}, 422, "examples[0].label: required"),
    ({"name": "t", "exmaples": []}, 422, "exmaples: unknown field"),
    ({"name": "t", "examples": "first example"}, 422, "examples:"),
    (["not", "an", "object"], 422, "the request body"),
    (two(cv=1.5), 422, "cv:"),
    # a label's newline cut the message at it: "examples: found 1 class (x"
    (two("x\ny", "x\ny"), 400, "examples: found 1 class ('x\\ny'); a classifier needs at least 2"),
])
def test_bad_tasks_are_refused_in_one_line(client, body, status, fragment):
    assert_refused(client.post("/v1/tasks", json=body), status, fragment)


def test_bad_requests_are_refused_in_one_line(client, clinc):
    tid = client.post("/v1/tasks", json={"name": "x", "examples": clinc[0]}).json()["task_id"]
    assert_refused(client.post("/v1/tasks", content=b"{not json", headers={"content-type": "application/json"}),
                   422, "not valid JSON")
    assert_refused(client.post("/v1/tasks"), 415, "Content-Type: application/json")
    # bodies json cannot decode for other reasons than syntax were a 400 "There was an error parsing the body"
    for body, reason in [('{"name": "café"}'.encode("latin-1"), "'utf-8' codec can't decode byte 0xe9"),
                         (b'{"cv": ' + b"9" * 5000 + b"}", "exceeds the limit (4300 digits)"),
                         (b"[" * 5000 + b"]" * 5000, "maximum recursion depth exceeded")]:
        assert_refused(client.post("/v1/tasks", content=body, headers={"content-type": "application/json"}), 422,
                       f"the request body is not valid JSON ({reason}")
    assert_refused(client.post("/v1/tasks", content=b"", headers={"content-type": "application/json"}), 422,
                   "request body is missing")
    # curl -d without -H sends a form's type: the answer says which header is missing, not what pydantic missed
    form = client.post("/v1/tasks", content=json.dumps({"examples": []}),
                       headers={"content-type": "application/x-www-form-urlencoded"})
    assert_refused(form, 415, "got application/x-www-form-urlencoded")
    assert_refused(client.post("/v1/tasks/t_nope/predict", json={"inputs": ["hi"]}), 404, "no task 't_nope'")
    assert_refused(client.post(f"/v1/tasks/{tid}/predict", json={"inputs": ["hi", ""]}), 400, "inputs[1] is empty text")
    assert_refused(client.post(f"/v1/tasks/{tid}/predict", json={"inputs": ["hi", 7]}), 400, "inputs[1] must be text")
    # an image sent to a text task was read as a word of base64 and answered with a class, 200
    for image in (png((200, 0, 0)), "data:image/png;base64," + png((0, 0, 200))):
        assert_refused(client.post(f"/v1/tasks/{tid}/predict", json={"inputs": ["hi", image]}), 400,
                       "inputs[1] is a base64 image, but this task reads text")
    assert_refused(client.post(f"/v1/tasks/{tid}/predict", json={"inputs": "hi"}), 422, "inputs:")
    assert_refused(client.post(f"/v1/tasks/{tid}/predict", json={"inputs": ["hi"] * 41}), 413, "at most 40 inputs")
    assert_refused(client.post(f"/v1/tasks/{tid}/predict", json={"inputs": ["x" * 60000]}), 413,
                   "over the limit of 0.05 MB (--max-body-mb)")  # as given: from whole bytes it read 0.0499992
    assert_refused(client.post(f"/v1/tasks/{tid}/examples", json={"examples": [{"text": "hi", "label": "a"}] * 71}),
                   413, "at most 100 examples")
    assert_refused(client.post(f"/v1/tasks/{tid}/examples", json={"examples": [{"text": "", "label": "a"}]}), 400,
                   "examples[0] is empty text")
    assert_refused(client.post(f"/v1/tasks/{tid}/examples", json={"examples": [{"text": "x", "label": 3}]}), 400,
                   "labels are text")
    assert_refused(client.get("/v1/nothing"), 404, "no such endpoint")
    assert_refused(client.put(f"/v1/tasks/{tid}", json={}), 405, "not allowed")


def test_the_token(clinc):
    secured = TestClient(create_app(TaskStore(), token="s3cret"))
    assert secured.get("/healthz").status_code == 200  # for load balancers: it tells nothing of the tasks
    assert_refused(secured.get("/v1/tasks"), 401, "Authorization: Bearer")
    assert secured.get("/v1/tasks").headers["www-authenticate"] == "Bearer"
    assert_refused(secured.get("/v1/tasks", headers={"Authorization": "Bearer s3cre"}), 401, "wrong token")
    assert_refused(secured.post("/v1/tasks", json={"examples": clinc[0]}, headers={"Authorization": "s3cret"}), 401,
                   "token")
    assert secured.get("/v1/tasks", headers={"Authorization": "Bearer s3cret"}).json() == {"tasks": []}
    assert TestClient(create_app(TaskStore())).get("/v1/tasks").status_code == 200  # no token set: none asked
    # asked before the body is read: a client without the token was answered 422 for a malformed
    # body, and 413 (after the server held the body) for a large one
    assert_refused(secured.post("/v1/tasks", content=b"{not json", headers={"content-type": "application/json"}),
                   401, "missing or wrong token")
    big = secured.post("/v1/tasks", content=b"x" * (33 * 2**20), headers={"content-type": "application/json"})
    assert_refused(big, 401, "missing or wrong token")
    # a token of non-ASCII characters, sent as UTF-8, was compared as latin-1 and never matched
    accented = TestClient(create_app(TaskStore(), token="clé-secrète"))
    assert accented.get("/v1/tasks", headers=[(b"authorization", "Bearer clé-secrète".encode())]).status_code == 200
    assert_refused(accented.get("/v1/tasks", headers={"Authorization": "Bearer cle-secrete"}), 401, "wrong token")


def test_a_token_of_whitespace_is_refused(monkeypatch):
    """QUICKADAPT_TOKEN=' ' started a service no request could pass (the start line said 'token
    required'); it is refused before the port is taken."""
    monkeypatch.setenv("QUICKADAPT_TOKEN", "  ")
    with socket.socket() as taken:  # the code before this refusal bound the port: its refusal, not a hang
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert_bad_input(run("serve", "--port", taken.getsockname()[1]), "QUICKADAPT_TOKEN is set but holds only "
                                                                          "whitespace")


def test_image_tasks(client):
    examples = [{"image": png((200 + i, 0, 0), i), "label": "red"} for i in range(3)]
    examples += [{"image": png((0, 0, 200 + i), i), "label": "blue"} for i in range(3)]
    r = client.post("/v1/tasks", json={"name": "colours", "encoder": "conv4", "examples": examples})
    assert r.status_code == 201 and r.json()["modality"] == "image", r.text
    tid = r.json()["task_id"]
    inputs = [png((210, 0, 0), 5), "data:image/png;base64," + png((0, 0, 230), 7)]  # a browser's data: URL too
    r = client.post(f"/v1/tasks/{tid}/predict", json={"inputs": inputs})
    assert [p["label"] for p in r.json()["predictions"]] == ["red", "blue"]
    assert_refused(client.post(f"/v1/tasks/{tid}/predict", json={"inputs": [base64.b64encode(b"GIF89a").decode()]}),
                   400, "inputs[0]: not a readable image")
    assert_refused(client.post(f"/v1/tasks/{tid}/predict", json={"inputs": ["%%"]}), 400,
                   "inputs[0] is not valid base64")


@pytest.fixture(scope="module")
def fitted(clinc_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("fitted") / "intents"
    result = run("fit", "--data", clinc_small["train"], "--encoder", "minilm", "--out", out, "--quiet")
    assert result.exit_code == 0, result.stderr
    return out


def test_a_fit_model_answers_as_predict_does(fitted, clinc_small):
    from quickadapt.serve.run import model_task

    predicted = run("predict", fitted, "--data", clinc_small["test"], "--json", "--quiet")
    assert predicted.exit_code == 0, predicted.stderr
    expected = [(p["label"], p["score"]) for p in json.loads(predicted.stdout)["predictions"]]
    store = TaskStore()
    store.put(model_task(fitted, "intents"))
    client = TestClient(create_app(store))
    described = client.get("/v1/tasks/intents").json()
    assert described["read_only"] and described["model"] == "intents" and described["n_classes"] == 6
    texts = load_dataset(clinc_small["test"], labels="ignore").inputs
    answers = client.post("/v1/tasks/intents/predict", json={"inputs": texts}).json()["predictions"]
    assert [(p["label"], p["score"]) for p in answers] == expected
    # named as `model` names it, without the server's path to it (/srv/models/intents, as --model gave it)
    refusals = [client.delete("/v1/tasks/intents"),
                client.post("/v1/tasks/intents/examples", json={"examples": [{"text": "hi", "label": "x"}]})]
    assert_refused(refusals[0], 409, "served from the model folder intents; it cannot be deleted")
    assert_refused(refusals[1], 409, "served from the model folder intents and cannot learn more examples")
    assert not any(str(fitted.parent) in r.text for r in refusals)


def test_a_task_of_many_classes_answers_the_likeliest_scores(tmp_path, client, clinc):
    """Every class's score in every prediction made a 10,000-class catalogue's answer to 1,000
    inputs 161 MB: `scores` lists the MAX_SCORES likeliest of a larger task, `max_scores` as many
    as the client asks, and a small task's answer is whole, as before."""
    from quickadapt import FewShotClassifier
    from quickadapt.serve.run import model_task
    from quickadapt.serve.tasks import MAX_SCORES

    n = MAX_SCORES + 50
    x = np.random.default_rng(0).normal(size=(n, 8)).astype(np.float32)
    FewShotClassifier(encoder="mlp").fit(x, [f"c{i}" for i in range(n)]).save(tmp_path / "catalogue")
    store = TaskStore()
    store.put(model_task(tmp_path / "catalogue", "catalogue"))
    catalogue = TestClient(create_app(store))
    inputs = x[:3].tolist()

    def predict(**ask):
        r = catalogue.post("/v1/tasks/catalogue/predict", json={"inputs": inputs, **ask})
        assert r.status_code == 200, r.text
        return r.json()["predictions"]

    whole = predict(max_scores=n)
    assert all(len(p["scores"]) == n and abs(sum(p["scores"].values()) - 1) < 1e-4 for p in whole)
    for capped, full in zip(predict(), whole):
        assert list(capped["scores"].items()) == list(full["scores"].items())[:MAX_SCORES]
        assert (capped["label"], capped["score"]) == (full["label"], full["score"])
    for few, full in zip(predict(max_scores=3, top_k=5), whole):
        assert list(few["scores"].items()) == list(full["scores"].items())[:3]
        assert [(t["label"], t["score"]) for t in few["top"]] == list(full["scores"].items())[:5]
    assert_refused(catalogue.post("/v1/tasks/catalogue/predict", json={"inputs": inputs, "max_scores": 0}), 422,
                   "max_scores")
    tid = client.post("/v1/tasks", json={"name": "intents", "examples": clinc[0]}).json()["task_id"]
    small = client.post(f"/v1/tasks/{tid}/predict", json={"inputs": ["what is my balance"]}).json()
    assert set(small["predictions"][0]["scores"]) == set(INTENTS)
    two = client.post(f"/v1/tasks/{tid}/predict", json={"inputs": ["what is my balance"], "max_scores": 2})
    assert list(two.json()["predictions"][0]["scores"].items()) == list(small["predictions"][0]["scores"].items())[:2]


def test_a_state_folder_serve_makes_is_its_user_s_alone_and_one_given_keeps_its_modes(tmp_path):
    """task.json keeps every example as posted: a folder the service makes was 0755 by the umask,
    so every local user could read them."""
    os.umask(old := os.umask(0o022))
    try:
        State(tmp_path / "made" / "state")
        assert (tmp_path / "made" / "state").stat().st_mode & 0o777 == 0o700
        given = tmp_path / "given"
        given.mkdir(mode=0o755)
        State(given)
        assert given.stat().st_mode & 0o777 == 0o755  # the user's own choice stands
    finally:
        os.umask(old)


def test_tasks_survive_a_restart(tmp_path, clinc):
    client = TestClient(create_app(TaskStore(state=State(tmp_path / "state"))))
    tid = client.post("/v1/tasks", json={"name": "kept", "examples": clinc[0][:10]}).json()["task_id"]
    client.post(f"/v1/tasks/{tid}/examples", json={"examples": clinc[0][10:15]})
    gone = client.post("/v1/tasks", json={"name": "gone", "examples": clinc[0][:10]}).json()["task_id"]
    client.delete(f"/v1/tasks/{gone}")
    texts = [t for t, _ in clinc[1]]
    before = client.post(f"/v1/tasks/{tid}/predict", json={"inputs": texts}).json()["predictions"]
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [tid]  # nothing half-written left beside it

    store = TaskStore(state=State(tmp_path / "state"))
    for t in store.state.load():
        store.put(t)
    again = TestClient(create_app(store))
    described = again.get(f"/v1/tasks/{tid}").json()
    assert (described["name"], described["n_examples"], described["n_classes"]) == ("kept", 15, 3)
    assert again.post(f"/v1/tasks/{tid}/predict", json={"inputs": texts}).json()["predictions"] == before
    r = again.post(f"/v1/tasks/{tid}/examples", json={"examples": clinc[0][15:20]})  # its examples came back too
    assert r.json()["n_examples"] == 20 and r.json()["n_classes"] == 4


def test_serve_refuses_bad_flags_in_one_line(tmp_path):
    assert_bad_input(run("serve", "--model", tmp_path / "missing"), "--model")
    assert_bad_input(run("serve", "--model", tmp_path), "not a quickadapt model")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        assert_bad_input(run("serve", "--port", taken.getsockname()[1]), "already in use")


def call(url, body=None, token=None):
    request = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, json.loads(response.read())


def test_the_real_command_serves_and_stops_on_sigterm(fitted, tmp_path):
    # as a secret file gives it, with its newline, which no client sends: every request was refused
    env = dict(os.environ, QUICKADAPT_TOKEN="tok\n", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "quickadapt", "serve", "--port", "0", "--model", fitted,
                             "--state", tmp_path / "state"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines, started = [], time.monotonic()
        while time.monotonic() - started < 120:
            lines.append(proc.stderr.readline())
            found = re.search(r"http://127\.0\.0\.1:(\d+)", lines[-1])
            if found or proc.poll() is not None:
                break
        assert found, "".join(lines)
        url = f"http://127.0.0.1:{found.group(1)}"
        assert call(url + "/healthz")[1]["tasks"] == 1
        with pytest.raises(urllib.error.HTTPError) as refused:
            call(url + "/v1/tasks")
        assert refused.value.code == 401 and "error" in json.loads(refused.value.read())
        status, answer = call(url + "/v1/tasks/intents/predict", {"inputs": ["what is the weather today"]}, token="tok")
        assert status == 200 and answer["predictions"][0]["label"] == "weather"
        with pytest.raises(urllib.error.HTTPError) as refused:  # named as the request's field, not as a flag
            call(url + "/v1/tasks/intents/predict", {"inputs": ["hi"], "threshold": 2}, token="tok")
        assert refused.value.code == 400
        assert json.loads(refused.value.read())["error"].startswith("threshold is a probability: between 0 and 1")
        # a second service on the folder: each answered from its own copy of a task and undid the other's writes
        with socket.socket() as taken:  # the code before this refusal went on to bind the port
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            assert_bad_input(run("serve", "--port", taken.getsockname()[1], "--state", tmp_path / "state"),
                             f"another quickadapt serve uses it (pid {proc.pid})")
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0 and "stopped by SIGTERM" in rest and "Traceback" not in "".join(lines) + rest


def test_sighup_answers_the_request_in_flight_then_stops(tmp_path):
    """Closing the terminal (SIGHUP) cut the requests in flight: uvicorn drains only on SIGINT and
    SIGTERM, and SIGHUP raised the command line's stop inside its event loop."""
    import threading

    env = dict(os.environ, OMP_NUM_THREADS="1", QUICKADAPT_NO_CACHE="1")  # the task embeds: in flight for seconds
    proc = subprocess.Popen([sys.executable, "-m", "quickadapt", "serve", "--port", "0"], stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        line, started = "", time.monotonic()
        while time.monotonic() - started < 120 and not re.search(r"http://127\.0\.0\.1:\d+", line):
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "serve ended before listening"
        url = "http://127.0.0.1:" + re.search(r"http://127\.0\.0\.1:(\d+)", line).group(1)
        examples = [{"text": f"request {i} about topic {i % 3}", "label": f"topic {i % 3}"} for i in range(300)]
        answered = []
        request = threading.Thread(target=lambda: answered.append(call(url + "/v1/tasks", {"examples": examples})))
        request.start()
        time.sleep(1.0)  # the request is read; building minilm and embedding 300 texts take longer
        assert request.is_alive(), "the request ended before the signal: nothing was in flight"
        proc.send_signal(signal.SIGHUP)
        request.join(timeout=120)
        rest = proc.communicate(timeout=60)[1]
    finally:
        proc.kill()
        proc.wait()
    assert answered and answered[0][0] == 201 and answered[0][1]["n_examples"] == 300
    assert proc.returncode == 0 and "stopped by SIGHUP" in rest and "Traceback" not in rest


def test_a_task_that_cannot_be_kept_is_not_made(tmp_path, clinc, monkeypatch):
    import errno

    client = TestClient(create_app(TaskStore(state=State(tmp_path / "state"))))
    tid = client.post("/v1/tasks", json={"name": "kept", "examples": clinc[0][:10]}).json()["task_id"]

    def full(self, task):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(State, "write", full)
    assert_refused(client.post("/v1/tasks", json={"name": "lost", "examples": clinc[0][:10]}), 500,
                   "could not be kept in --state (No space left on device)")
    assert_refused(client.post(f"/v1/tasks/{tid}/examples", json={"examples": clinc[0][10:15]}), 500, "not changed")
    assert [(t["task_id"], t["n_examples"]) for t in client.get("/v1/tasks").json()["tasks"]] == [(tid, 10)]


def test_an_error_of_the_service_s_own_is_one_line_too(monkeypatch, capfd):
    store = TaskStore()

    def broken(*args, **kwargs):
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(store, "all", broken)
    r = TestClient(create_app(store), raise_server_exceptions=False).get("/v1/tasks")
    assert_refused(r, 500, "internal error (RuntimeError)")
    assert "a bug" not in r.text and "error: GET /v1/tasks: RuntimeError: a bug" in capfd.readouterr().err


def test_a_domain_adapted_folder_says_how_many_examples_it_learnt_from(tmp_path):
    """A domain-adapt folder served with --model described n_examples as null: its info counts the
    labelled source examples (n_source_fit) and the unlabelled target ones (n_target), not n_examples."""
    from quickadapt.serve.run import model_task

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 12)
    means = rng.normal(size=(3, 5)) * 2
    np.savez(tmp_path / "source.npz", X=means[y] + rng.normal(size=(36, 5)), y=y)
    np.savez(tmp_path / "target.npz", X=means[y[:21]] + rng.normal(size=(21, 5)) + 1.5)
    adapted = run("domain-adapt", "--source", tmp_path / "source.npz", "--target", tmp_path / "target.npz",
                  "--method", "coral", "--out", tmp_path / "shifted", "--quiet")
    assert adapted.exit_code == 0, adapted.stderr
    store = TaskStore()
    store.put(model_task(tmp_path / "shifted", "shifted"))
    described = TestClient(create_app(store)).get("/v1/tasks/shifted").json()
    assert (described["n_examples"], described["n_target"], described["n_classes"]) == (36, 21, 3)


def test_the_number_of_tasks_is_capped(tmp_path):
    """Every task created was kept for as long as the service ran, without bound; past --max-tasks a
    new one is refused (413) until one is deleted, and a served folder does not count."""
    from quickadapt.serve.run import model_task

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "f.npz", X=rng.normal(size=(12, 4)), y=np.arange(12) % 2)
    assert run("fit", "--data", tmp_path / "f.npz", "--out", tmp_path / "served", "--cv", "0", "--quiet").exit_code == 0
    store = TaskStore(Limits(max_tasks=2))
    store.put(model_task(tmp_path / "served", "served"))
    client = TestClient(create_app(store))
    examples = [{"image": png((200, 0, 0), i), "label": "red"} for i in range(2)]
    examples += [{"image": png((0, 0, 200), i), "label": "blue"} for i in range(2)]
    body = {"encoder": "conv4", "examples": examples}
    first, second = (client.post("/v1/tasks", json=body) for _ in range(2))
    assert first.status_code == second.status_code == 201, first.text
    assert_refused(client.post("/v1/tasks", json=body), 413,
                   "the service holds at most 2 tasks (--max-tasks) and holds 2; DELETE /v1/tasks/ID")
    assert len(client.get("/v1/tasks").json()["tasks"]) == 3
    client.delete(f"/v1/tasks/{first.json()['task_id']}")
    assert client.post("/v1/tasks", json=body).status_code == 201
    assert_bad_input(run("serve", "--max-tasks", "0"), "--max-tasks must be at least 1")


def test_a_kept_task_is_its_folder(tmp_path, clinc):
    """A task.json naming another task id than its folder's loaded under that id: one naming '..'
    was then written over the state folder's parent by POST /examples (deleting it), and a copied
    folder (t_x.bak) was loaded as t_x, so DELETE removed t_x's folder and the copy came back at the
    next start."""
    import shutil

    state = tmp_path / "state"
    client = TestClient(create_app(TaskStore(state=State(state))))
    tid = client.post("/v1/tasks", json={"name": "kept", "examples": clinc[0][:10]}).json()["task_id"]
    shutil.copytree(state / tid, state / f"{tid}.bak")
    with pytest.raises(ValueError, match=rf"task {tid}\.bak cannot be read \(task\.json names the task '{tid}'"):
        State(state).load()
    shutil.rmtree(state / f"{tid}.bak")
    record = json.loads((state / tid / "task.json").read_text())
    (state / tid / "task.json").write_text(json.dumps(dict(record, task_id="..")))
    with pytest.raises(ValueError, match=rf"task {tid} cannot be read \(task\.json names the task '\.\.'"):
        State(state).load()


def test_queued_fits_leave_threads_to_other_requests(monkeypatch):
    """Fits run one at a time, and each one queued held a worker thread while it waited: 70 POST
    /v1/tasks at once held all 40 of the pool's, and a /healthz or a predict sent meanwhile waited
    13.7 s for one. Here a fit that does not end holds the lock while 45 more are queued."""
    import threading

    import uvicorn

    from quickadapt.serve.errors import ApiError

    store = TaskStore()
    server = uvicorn.Server(uvicorn.Config(create_app(store), log_level="warning", lifespan="off"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    serving = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    serving.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    def refused(*args, **kwargs):  # once the lock is let go, each queued fit ends at once
        raise ApiError(400, "not fitted")

    monkeypatch.setattr(store, "fit", refused)
    answers = []

    def create():
        try:
            call(url + "/v1/tasks", {"examples": [{"text": "one", "label": "a"}, {"text": "two", "label": "b"}]})
        except urllib.error.HTTPError as exc:
            answers.append(exc.code)

    creates = [threading.Thread(target=create) for _ in range(45)]
    try:
        while not server.started:
            time.sleep(0.05)
        with store.fit_lock:  # a long fit
            for thread in creates:
                thread.start()
            time.sleep(1.0)  # all 45 are read and queued
            started = time.monotonic()
            request = urllib.request.Request(url + "/v1/tasks")
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 200 and time.monotonic() - started < 5
        for thread in creates:
            thread.join(timeout=60)
        assert answers == [400] * 45
    finally:
        server.should_exit = True
        serving.join(timeout=30)
        sock.close()
