SELECT bidder, count(*) AS bid_count, window_start, window_end FROM bid
GROUP BY session("dateTime", INTERVAL '10' SECOND), bidder
