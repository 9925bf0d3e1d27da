"""The paper's reported values (paper 003, supplementary Tables S5-S11), printed beside ours.

Keys are condition tuples in our vocabulary (topologies ``linear / tree / sp / entangled``,
loads ``low / medium / high``, governance ``none / moderate / strict``, architectures ``naive /
hybrid_ema_only / hybrid``); values map our metric names to the paper's means over 10 seeds.
Table S8 is the naive/hybrid subset of Table S9, so Experiment 4 uses S9. Table S11 gives drop
rates in percent; they are stored as fractions like every other drop rate.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence


def _table(columns: Sequence[str], rows: Mapping[Hashable, Sequence[float]]
           ) -> dict[Hashable, dict[str, float]]:
    return {key: dict(zip(columns, (float(v) for v in values), strict=True))
            for key, values in rows.items()}


# Table S5: Experiment 1 (topology x load).
EXP1 = _table(('median_latency', 'p95_latency', 'drop_rate', 'utilisation', 'volatility'), {
    ('linear', 'low'): (126, 145, 0.34, 0.14, 0.000),
    ('linear', 'medium'): (130, 150, 0.35, 0.29, 0.000),
    ('linear', 'high'): (134, 154, 0.37, 0.43, 0.000),
    ('tree', 'low'): (136, 156, 0.39, 0.17, 0.000),
    ('tree', 'medium'): (138, 159, 0.40, 0.35, 0.000),
    ('tree', 'high'): (142, 163, 0.49, 0.52, 0.000),
    ('sp', 'low'): (137, 157, 0.39, 0.28, 0.000),
    ('sp', 'medium'): (140, 160, 0.53, 0.55, 0.000),
    ('sp', 'high'): (146, 168, 0.90, 0.83, 0.112),
    ('entangled', 'low'): (143, 164, 0.44, 0.37, 0.000),
    ('entangled', 'medium'): (149, 170, 0.77, 0.74, 0.373),
    ('entangled', 'high'): (404, 473, 1.00, 1.11, 0.273),
})

# Table S6: Experiment 2 (topology x N, medium load).
EXP2 = _table(('median_latency', 'drop_rate', 'deadline_satisfaction', 'volatility'), {
    ('tree', 10): (136, 0.38, 0.62, 0.000),
    ('tree', 20): (136, 0.38, 0.62, 0.000),
    ('tree', 30): (137, 0.39, 0.61, 0.000),
    ('tree', 40): (138, 0.40, 0.60, 0.000),
    ('tree', 50): (138, 0.40, 0.60, 0.000),
    ('tree', 60): (139, 0.40, 0.60, 0.000),
    ('sp', 10): (136, 0.38, 0.62, 0.000),
    ('sp', 20): (138, 0.40, 0.60, 0.000),
    ('sp', 30): (139, 0.40, 0.60, 0.000),
    ('sp', 40): (140, 0.42, 0.58, 0.000),
    ('sp', 50): (140, 0.53, 0.47, 0.000),
    ('sp', 60): (139, 0.67, 0.33, 0.000),
    ('entangled', 10): (142, 0.43, 0.57, 0.000),
    ('entangled', 20): (145, 0.46, 0.54, 0.000),
    ('entangled', 30): (148, 0.49, 0.51, 0.116),
    ('entangled', 40): (149, 0.63, 0.37, 0.287),
    ('entangled', 50): (149, 0.77, 0.23, 0.373),
    ('entangled', 60): (152, 0.93, 0.07, 0.301),
})

# Table S7: Experiment 3 (topology x load x governance).
EXP3 = _table(('median_latency', 'drop_rate', 'coverage', 'volatility'), {
    ('tree', 'medium', 'none'): (138, 0.40, 0.76, 0.000),
    ('tree', 'medium', 'moderate'): (138, 0.40, 0.76, 0.000),
    ('tree', 'medium', 'strict'): (137, 0.63, 0.45, 0.882),
    ('tree', 'high', 'none'): (142, 0.49, 0.59, 0.000),
    ('tree', 'high', 'moderate'): (142, 0.49, 0.60, 0.246),
    ('tree', 'high', 'strict'): (138, 0.72, 0.30, 1.686),
    ('entangled', 'medium', 'none'): (149, 0.77, 0.25, 0.373),
    ('entangled', 'medium', 'moderate'): (148, 0.77, 0.25, 0.347),
    ('entangled', 'medium', 'strict'): (146, 0.89, 0.12, 1.338),
    ('entangled', 'high', 'none'): (404, 1.00, 0.004, 0.273),
    ('entangled', 'high', 'moderate'): (347, 1.00, 0.004, 0.259),
    ('entangled', 'high', 'strict'): (266, 1.00, 0.002, 0.433),
})

# Table S9: Experiment 4 (topology x load x architecture x N).
EXP4 = _table(('median_latency', 'drop_rate', 'welfare', 'volatility'), {
    ('sp', 'medium', 'naive', 20): (138, 0.40, 9.2, 0.000),
    ('sp', 'medium', 'hybrid_ema_only', 20): (138, 0.40, 9.2, 0.096),
    ('sp', 'medium', 'hybrid', 20): (137, 0.39, 9.3, 0.096),
    ('sp', 'medium', 'naive', 40): (140, 0.42, 17.4, 0.000),
    ('sp', 'medium', 'hybrid_ema_only', 40): (140, 0.42, 17.4, 0.096),
    ('sp', 'medium', 'hybrid', 40): (138, 0.41, 17.9, 0.096),
    ('sp', 'medium', 'naive', 60): (139, 0.67, 14.8, 0.000),
    ('sp', 'medium', 'hybrid_ema_only', 60): (139, 0.67, 14.8, 0.096),
    ('sp', 'medium', 'hybrid', 60): (138, 0.67, 15.1, 0.096),
    ('sp', 'medium', 'naive', 80): (149, 0.95, 2.9, 0.198),
    ('sp', 'medium', 'hybrid_ema_only', 80): (149, 0.95, 3.0, 0.097),
    ('sp', 'medium', 'hybrid', 80): (139, 0.95, 3.0, 0.096),
    ('sp', 'high', 'naive', 20): (141, 0.42, 12.9, 0.000),
    ('sp', 'high', 'hybrid_ema_only', 20): (141, 0.42, 12.9, 0.096),
    ('sp', 'high', 'hybrid', 20): (139, 0.41, 13.4, 0.096),
    ('sp', 'high', 'naive', 40): (141, 0.68, 14.4, 0.000),
    ('sp', 'high', 'hybrid_ema_only', 40): (141, 0.68, 14.4, 0.096),
    ('sp', 'high', 'hybrid', 40): (139, 0.67, 14.9, 0.096),
    ('sp', 'high', 'naive', 60): (197, 1.00, 0.3, 0.337),
    ('sp', 'high', 'hybrid_ema_only', 60): (315, 0.99, 0.4, 0.097),
    ('sp', 'high', 'hybrid', 60): (181, 0.99, 0.4, 0.096),
    ('sp', 'high', 'naive', 80): (635, 1.00, 0.0, 0.286),
    ('sp', 'high', 'hybrid_ema_only', 80): (699, 1.00, 0.0, 0.097),
    ('sp', 'high', 'hybrid', 80): (674, 1.00, 0.0, 0.097),
    ('entangled', 'medium', 'naive', 20): (145, 0.46, 8.0, 0.000),
    ('entangled', 'medium', 'hybrid_ema_only', 20): (145, 0.46, 8.0, 0.096),
    ('entangled', 'medium', 'hybrid', 20): (144, 0.45, 8.2, 0.096),
    ('entangled', 'medium', 'naive', 40): (149, 0.63, 10.8, 0.287),
    ('entangled', 'medium', 'hybrid_ema_only', 40): (150, 0.63, 10.7, 0.262),
    ('entangled', 'medium', 'hybrid', 40): (146, 0.61, 11.4, 0.096),
    ('entangled', 'medium', 'naive', 60): (152, 0.93, 3.1, 0.301),
    ('entangled', 'medium', 'hybrid_ema_only', 60): (156, 0.93, 3.0, 0.097),
    ('entangled', 'medium', 'hybrid', 60): (155, 0.93, 2.9, 0.154),
    ('entangled', 'medium', 'naive', 80): (439, 1.00, 0.0, 0.274),
    ('entangled', 'medium', 'hybrid_ema_only', 80): (453, 1.00, 0.0, 0.097),
    ('entangled', 'medium', 'hybrid', 80): (473, 1.00, 0.0, 0.097),
    ('entangled', 'high', 'naive', 20): (151, 0.53, 10.1, 0.066),
    ('entangled', 'high', 'hybrid_ema_only', 20): (151, 0.53, 10.1, 0.141),
    ('entangled', 'high', 'hybrid', 20): (147, 0.50, 10.9, 0.096),
    ('entangled', 'high', 'naive', 40): (157, 0.93, 3.0, 0.307),
    ('entangled', 'high', 'hybrid_ema_only', 40): (164, 0.93, 3.0, 0.165),
    ('entangled', 'high', 'hybrid', 40): (162, 0.93, 3.0, 0.097),
    ('entangled', 'high', 'naive', 60): (683, 1.00, 0.0, 0.270),
    ('entangled', 'high', 'hybrid_ema_only', 60): (651, 1.00, 0.0, 0.097),
    ('entangled', 'high', 'hybrid', 60): (684, 1.00, 0.0, 0.097),
    ('entangled', 'high', 'naive', 80): (688, 1.00, 0.0, 0.346),
    ('entangled', 'high', 'hybrid_ema_only', 80): (620, 1.00, 0.0, 0.097),
    ('entangled', 'high', 'hybrid', 80): (684, 1.00, 0.0, 0.097),
})

# Table S10: Experiment 5 (topology x load x architecture x governance).
EXP5 = _table(('median_latency', 'drop_rate', 'welfare', 'volatility'), {
    ('tree', 'medium', 'naive', 'none'): (138, 0.40, 23.0, 0.000),
    ('tree', 'medium', 'naive', 'strict'): (137, 0.73, 10.6, 0.770),
    ('tree', 'medium', 'hybrid', 'none'): (137, 0.39, 23.4, 0.096),
    ('tree', 'medium', 'hybrid', 'strict'): (136, 0.72, 10.9, 0.208),
    ('tree', 'high', 'naive', 'none'): (142, 0.49, 28.6, 0.000),
    ('tree', 'high', 'naive', 'strict'): (138, 0.67, 18.5, 1.152),
    ('tree', 'high', 'hybrid', 'none'): (139, 0.47, 30.0, 0.096),
    ('tree', 'high', 'hybrid', 'strict'): (137, 0.67, 19.1, 0.498),
    ('sp', 'medium', 'naive', 'none'): (140, 0.53, 17.4, 0.000),
    ('sp', 'medium', 'naive', 'strict'): (138, 0.63, 13.9, 0.775),
    ('sp', 'medium', 'hybrid', 'none'): (138, 0.52, 18.0, 0.096),
    ('sp', 'medium', 'hybrid', 'strict'): (137, 0.62, 14.5, 0.195),
    ('sp', 'high', 'naive', 'none'): (146, 0.90, 5.7, 0.112),
    ('sp', 'high', 'naive', 'strict'): (140, 0.97, 1.7, 0.407),
    ('sp', 'high', 'hybrid', 'none'): (140, 0.90, 5.9, 0.096),
    ('sp', 'high', 'hybrid', 'strict'): (139, 0.97, 1.9, 0.202),
    ('entangled', 'medium', 'naive', 'none'): (149, 0.77, 8.4, 0.373),
    ('entangled', 'medium', 'naive', 'strict'): (145, 0.81, 7.1, 1.315),
    ('entangled', 'medium', 'hybrid', 'none'): (146, 0.76, 8.6, 0.096),
    ('entangled', 'medium', 'hybrid', 'strict'): (144, 0.79, 7.7, 0.388),
    ('entangled', 'high', 'naive', 'none'): (404, 1.00, 0.1, 0.273),
    ('entangled', 'high', 'naive', 'strict'): (199, 1.00, 0.1, 0.455),
    ('entangled', 'high', 'hybrid', 'none'): (444, 1.00, 0.1, 0.097),
    ('entangled', 'high', 'hybrid', 'strict'): (168, 1.00, 0.2, 0.313),
})

# Table S11: Experiment 6, naive architecture (topology x load x mechanism).
EXP6 = _table(('welfare', 'drop_rate'), {
    ('tree', 'medium', 'random'): (22.1, 0.413),
    ('tree', 'medium', 'edf'): (22.1, 0.412),
    ('tree', 'medium', 'value_greedy'): (23.0, 0.397),
    ('tree', 'medium', 'market'): (23.0, 0.397),
    ('tree', 'high', 'random'): (24.4, 0.535),
    ('tree', 'high', 'edf'): (24.3, 0.537),
    ('tree', 'high', 'value_greedy'): (28.6, 0.488),
    ('tree', 'high', 'market'): (28.6, 0.488),
    ('sp', 'medium', 'random'): (17.8, 0.500),
    ('sp', 'medium', 'edf'): (17.7, 0.503),
    ('sp', 'medium', 'value_greedy'): (17.4, 0.534),
    ('sp', 'medium', 'market'): (17.4, 0.534),
    ('sp', 'high', 'random'): (2.4, 0.939),
    ('sp', 'high', 'edf'): (2.5, 0.938),
    ('sp', 'high', 'value_greedy'): (5.7, 0.898),
    ('sp', 'high', 'market'): (5.7, 0.898),
    ('entangled', 'medium', 'random'): (0.3, 0.989),
    ('entangled', 'medium', 'edf'): (0.3, 0.988),
    ('entangled', 'medium', 'value_greedy'): (8.4, 0.769),
    ('entangled', 'medium', 'market'): (8.4, 0.767),
    ('entangled', 'high', 'random'): (0.0, 1.000),
    ('entangled', 'high', 'edf'): (0.0, 1.000),
    ('entangled', 'high', 'value_greedy'): (0.1, 0.999),
    ('entangled', 'high', 'market'): (0.1, 0.998),
})
