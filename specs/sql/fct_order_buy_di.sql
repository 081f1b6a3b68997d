SELECT
    o.order_id,
    o.order_time,
    o.customer_id,
    o.product_id,
    o.quantity,
    o.amount,
    p.category,
    p.brand,
    p.price_band,
    c.city,
    c.member_level
FROM {{ ref('ods_order') }} AS o
LEFT JOIN {{ ref('dim_products') }} AS p
    ON p.product_id = o.product_id AND p.ds = DATE '{{ ds }}'
LEFT JOIN {{ ref('dim_customer') }} AS c
    ON c.customer_id = o.customer_id AND c.ds = DATE '{{ ds }}'
WHERE o.ds = DATE '{{ ds }}'
