SELECT window_start, auction, count(*) AS num FROM bid
GROUP BY hop("dateTime", INTERVAL '2' SECOND, INTERVAL '10' SECOND), auction
ORDER BY num DESC, auction LIMIT 1
