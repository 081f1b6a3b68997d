WITH orders_7d AS (
    -- the trailing window reads the integration table, loaded beforehand for every day it needs
    SELECT o.customer_id, COUNT(o.order_id) AS order_cnt_7d
    FROM {{ ref('ods_order') }} AS o
    WHERE o.ds BETWEEN DATE '{{ ds_add(ds, -6) }}' AND DATE '{{ ds }}'
    GROUP BY o.customer_id
),
orders_1d AS (
    SELECT
        f.customer_id,
        COUNT(f.order_id) AS order_cnt_1d,
        SUM(f.amount) AS order_amt_1d,
        -- exact average rounded half up to the cent: integer cents, no DOUBLE (AVG of a DECIMAL is one)
        CAST((CAST(SUM(f.amount) * 100 AS BIGINT) * 2 + COUNT(f.amount)) // (2 * COUNT(f.amount))
             AS DECIMAL(18, 0)) * 0.01 AS avg_order_amt_1d,
        COUNT(DISTINCT f.product_id) AS product_cnt_1d
    FROM {{ ref('fct_order_buy_di') }} AS f
    WHERE f.ds = DATE '{{ ds }}'
    GROUP BY f.customer_id
)
SELECT
    w.customer_id,
    COALESCE(d.order_cnt_1d, 0) AS order_cnt_1d,
    CAST(COALESCE(d.order_amt_1d, 0) AS DECIMAL(18, 2)) AS order_amt_1d,
    CAST(COALESCE(d.avg_order_amt_1d, 0) AS DECIMAL(18, 2)) AS avg_order_amt_1d,
    COALESCE(d.product_cnt_1d, 0) AS product_cnt_1d,
    w.order_cnt_7d
FROM orders_7d AS w
LEFT JOIN orders_1d AS d ON d.customer_id = w.customer_id
