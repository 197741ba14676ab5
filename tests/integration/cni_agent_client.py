"""meshlet-cni-agent's HTTP endpoints and a poll, for the tests that run the agent."""

import time
import urllib.error
import urllib.request


def wait_for(predicate, timeout, what):
    """predicate()'s first true value within `timeout` seconds, else AssertionError naming
    `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def stop_agent(agent, log):
    """Kills `agent` (a Popen, or None) if it still runs and closes its `log`: what every test
    that starts the agent does in tearDown, also after a failure."""
    if agent is None:
        return
    if agent.poll() is None:
        agent.kill()
        agent.wait()
    log.close()


def get(port, path):
    """(status, body) of GET http://127.0.0.1:PORT/PATH; (0, "") when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def metric(port, name):
    """The value of the series `name` (with its labels, as exposed) on /metrics, or None."""
    for line in get(port, "/metrics")[1].splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[-1]))
    return None


class AgentEndpoints:
    """For a unittest.TestCase whose agent serves on self.port."""

    def get(self, path):
        return get(self.port, path)

    def metric(self, name):
        value = metric(self.port, name)
        self.assertIsNotNone(value, f"no metric {name}")
        return value
