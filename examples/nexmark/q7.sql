SELECT window_start, max(price) AS price FROM bid GROUP BY tumble("dateTime", INTERVAL '10' SECOND)
