-- Does a program make a difference? Per program, the contacts held out of its marketing
-- messages against those it treated: the share of each that reached the program's goal,
-- the difference, and a 95% Wald interval for it. Each contact is counted from the first
-- message the program decided for them (the due time, the same for both groups), so a goal
-- reached before the program spoke is no conversion.
with

contacts as (

    -- per program and contact: held out or treated, converted or not
    -- (int_program_contact_outcomes, incremental)
    select * from {{ ref('int_program_contact_outcomes') }}

),

groups as (

    select
        program,
        count(*) filter (where not is_held_out) as treated_contacts,
        count(*) filter (where not is_held_out and has_converted) as treated_converted,
        count(*) filter (where is_held_out) as held_out_contacts,
        count(*) filter (where is_held_out and has_converted) as held_out_converted
    from contacts
    group by program

),

rates as (

    select
        *,
        1.0 * treated_converted / nullif(treated_contacts, 0) as treated_rate,
        1.0 * held_out_converted / nullif(held_out_contacts, 0) as held_out_rate
    from groups

),

intervals as (

    select
        *,
        treated_rate - held_out_rate as difference,
        -- 95%: z = 1.96; the standard error of a difference of two independent proportions
        1.96 * sqrt(treated_rate * (1 - treated_rate) / nullif(treated_contacts, 0)
            + held_out_rate * (1 - held_out_rate) / nullif(held_out_contacts, 0)) as margin
    from rates

),

final as (

    select
        program,
        treated_contacts,
        treated_converted,
        round(treated_rate, 4) as treated_conversion_rate,
        held_out_contacts,
        held_out_converted,
        round(held_out_rate, 4) as held_out_conversion_rate,
        round(difference, 4) as conversion_rate_difference,
        round(difference - margin, 4) as difference_ci_lower,
        round(difference + margin, 4) as difference_ci_upper,
        coalesce(difference - margin > 0 or difference + margin < 0, false)
            as is_difference_significant
    from intervals

)

select * from final
