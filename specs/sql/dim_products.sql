SELECT
    p.product_id,
    p.product_name,
    p.category,
    p.brand,
    p.price,
    CASE WHEN p.price < 50 THEN 'low' WHEN p.price < 200 THEN 'mid' ELSE 'high' END AS price_band
FROM {{ ref('ods_product') }} AS p
WHERE p.ds = DATE '{{ ds }}'
