"""What a checker says: the anomalies it found (each naming the operations involved) and counts."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ('Anomaly', 'Report', 'Findings')

KEPT_PER_KIND = 20      # anomalies kept per kind; all are counted


@dataclass(frozen=True)
class Anomaly:
    kind: str
    message: str
    ops: tuple = ()


@dataclass
class Report:
    """``valid`` when no anomaly was found. ``anomalies`` keeps at most 20 per kind; ``counts`` has
    every kind's total under ``'anomalies'`` and the checker's own figures."""

    checker: str
    valid: bool
    anomalies: list
    counts: dict = field(default_factory=dict)

    def kinds(self) -> set:
        return {anomaly.kind for anomaly in self.anomalies}

    def __str__(self):
        figures = ', '.join(f'{name} {value}' for name, value in self.counts.items() if name != 'anomalies')
        lines = [f'{self.checker}: {"valid" if self.valid else "INVALID"} ({figures})']
        for kind, total in sorted(self.counts.get('anomalies', {}).items()):
            lines.append(f'  {kind}: {total}')
            lines += [f'    {anomaly.message}' for anomaly in self.anomalies if anomaly.kind == kind][:3]
        return '\n'.join(lines)


class Findings:
    """Collects anomalies while a checker runs, then makes the Report."""

    def __init__(self, checker: str):
        self.checker = checker
        self.anomalies: list[Anomaly] = []
        self.totals: dict[str, int] = {}

    def add(self, kind: str, message: str, *ops) -> None:
        total = self.totals.get(kind, 0) + 1
        self.totals[kind] = total
        if total <= KEPT_PER_KIND:
            self.anomalies.append(Anomaly(kind, message, tuple(op.index if hasattr(op, 'index') else op
                                                               for op in ops)))

    def report(self, **counts) -> Report:
        counts['anomalies'] = dict(self.totals)
        return Report(self.checker, not self.totals, self.anomalies, counts)
