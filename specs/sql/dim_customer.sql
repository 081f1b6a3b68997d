SELECT
    c.customer_id,
    c.customer_name,
    c.gender,
    c.city,
    c.member_level,
    CAST(c.created_at AS DATE) AS register_date,
    CAST(DATE '{{ ds }}' - CAST(c.created_at AS DATE) AS INTEGER) AS register_days
FROM {{ ref('ods_customer') }} AS c
WHERE c.ds = DATE '{{ ds }}'
