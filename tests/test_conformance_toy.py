"""The conformance kit, run on the toy plugin installed through its real entry point."""

from fmhub.testing import ConformanceCase, ConformanceSuite

POINTS = [[0.1, 0.2, 0.3, 0.4], [1.0, -1.0, 0.5, 2.0], [0.0, 0.0, 0.0, 0.0]]


class TestToyConformance(ConformanceSuite):
    cases = [
        ConformanceCase(
            model="toy:embed", inputs=POINTS, task="embedding", bad_inputs=[[1.0, 2.0], "text"]
        ),
        ConformanceCase(
            model="toy-classifier", inputs=POINTS, task="classification", bad_inputs=[[1.0]]
        ),
    ]
